"""Committing to a Delta table and knowing what is committed, on a table in a local folder (no server)."""

import json

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from sinks.delta_commits import CHECKPOINT_INTERVAL, CommittedOffsets, DeltaCommitter, DeltaLakeError, retrying
from sinks.delta import _FileToAdd, add_action
from sinks.delta_stats import file_stats
from sinks.files import encode_parquet

CHECKPOINT_KEY, = CHECKPOINT_INTERVAL
SCHEMA = pa.schema([("ticker", pa.string()), ("price", pa.float64()), ("kafka_offset", pa.int64())])


def committer(path, sleeps=None):
    return DeltaCommitter(str(path), {}, SCHEMA, ["ticker"], sleep=(sleeps.append if sleeps is not None else lambda s: None))


def upload(path, ticker: str, offsets: range) -> object:
    """A data file written into the table's folder, and its log entry."""
    rows = pa.table({"price": [1.0] * len(offsets), "kafka_offset": list(offsets)})
    relative = f"ticker={ticker}/part-{offsets.start:05d}.parquet"
    data = encode_parquet(rows, "zstd")
    (path / f"ticker={ticker}").mkdir(parents=True, exist_ok=True)
    (path / relative).write_bytes(data)
    return add_action(_FileToAdd(relative, relative, (("ticker", ticker),), rows, offsets.start, offsets.stop - 1), len(data),
                      file_stats(rows, ["price", "kafka_offset"]))


def answer_lost_once(monkeypatch) -> list:
    """The first commit lands, but its answer is lost (the connection reset); the calls made so far."""
    real, calls = DeltaTable.create_write_transaction, []

    def lands_then_fails(self, *args, **kwargs):
        calls.append(1)
        real(self, *args, **kwargs)
        if len(calls) == 1:
            raise OSError("connection reset by peer")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", lands_then_fails)
    return calls


def test_a_commit_adds_its_files_and_versions_together(tmp_path):
    table = committer(tmp_path)
    assert table.committed_version("app:0") == -1
    table.commit_files([upload(tmp_path, "A", range(0, 10)), upload(tmp_path, "B", range(10, 15))], {"app:0": 14})
    assert table.committed_version("app:0") == 14
    read = DeltaTable(str(tmp_path))
    assert read.version() == 1 and read.transaction_version("app:0") == 14
    assert sorted(read.to_pyarrow_table().column("kafka_offset").to_pylist()) == list(range(15))


def test_a_commit_that_lost_a_race_with_another_process_is_made_on_the_newer_table(tmp_path):
    mine, other = committer(tmp_path), committer(tmp_path)
    mine.commit_files([upload(tmp_path, "A", range(0, 5))], {"mine:0": 4})
    other.commit_files([upload(tmp_path, "B", range(0, 5))], {"other:0": 4})  # `mine` has not seen this one
    mine.commit_files([upload(tmp_path, "A", range(5, 10))], {"mine:0": 9})
    read = DeltaTable(str(tmp_path))
    assert read.version() == 3
    assert (read.transaction_version("mine:0"), read.transaction_version("other:0")) == (9, 4)
    assert read.to_pyarrow_table().num_rows == 15


def test_an_attempt_that_landed_although_its_answer_was_lost_is_not_made_again(tmp_path, monkeypatch):
    table = committer(tmp_path)
    calls = answer_lost_once(monkeypatch)
    table.commit_files([upload(tmp_path, "A", range(0, 5))], {"app:0": 4})
    monkeypatch.undo()
    read = DeltaTable(str(tmp_path))
    assert read.version() == 1 and read.to_pyarrow_table().num_rows == 5


def test_a_replacing_commit_swaps_the_selected_partitions_files_for_its_own_and_adds_the_rest(tmp_path, monkeypatch):
    table = committer(tmp_path)
    table.commit_files([upload(tmp_path, "A", range(0, 5)), upload(tmp_path, "A", range(5, 8)),
                  upload(tmp_path, "B", range(0, 3))], {"app": 0})
    assert table.read([("ticker", "in", ["A"])]).num_rows == 8
    answer_lost_once(monkeypatch)  # a retry must not remove A's new file
    table.commit_files([upload(tmp_path, "A", range(100, 102)), upload(tmp_path, "C", range(0, 4))], {"app": 1},
                 replacing=[("ticker", "in", ["A"])])
    monkeypatch.undo()
    read = DeltaTable(str(tmp_path))
    assert read.version() == 2 and read.transaction_version("app") == 1
    offsets = {ticker: sorted(read.to_pyarrow_table(filters=[("ticker", "=", ticker)]).column("kafka_offset").to_pylist())
               for ticker in "ABC"}
    assert offsets == {"A": [100, 101], "B": [0, 1, 2], "C": [0, 1, 2, 3]}
    assert len([uri for uri in read.file_uris() if "ticker=A" in uri]) == 1


def test_a_store_that_is_down_is_retried_with_capped_backoff_until_the_commit_lands(tmp_path, monkeypatch):
    sleeps = []
    table = committer(tmp_path, sleeps)
    real, failures = DeltaTable.create_write_transaction, [OSError("connection refused")] * 8

    def down_for_a_while(self, *args, **kwargs):
        if failures:
            raise failures.pop()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", down_for_a_while)
    table.commit_files([upload(tmp_path, "A", range(0, 5))], {"app:0": 4})
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert DeltaTable(str(tmp_path)).transaction_version("app:0") == 4


def test_refused_credentials_are_not_retried():
    def refused():
        raise OSError("Generic S3 error: InvalidAccessKeyId: The Access Key Id you provided does not exist")

    with pytest.raises(DeltaLakeError, match="check S3_ACCESS_KEY / S3_SECRET_KEY"):
        retrying("committing", refused, sleep=lambda s: pytest.fail("must not retry a refusal"))


def test_committed_offsets_read_each_partition_once_under_current_and_former_app_ids():
    versions = {("", "marketstream:stock:t:i1:0"): 10, ("", "marketstream:stock_trades:t:i1:0"): 25,
                ("", "marketstream:stock:t:i1:1"): 7}
    asked = []

    def committed_version(table, app_id):
        asked.append((table, app_id))
        return versions.get((table, app_id), -1)

    offsets = CommittedOffsets(["marketstream:stock:t:i1", "marketstream:stock_trades:t:i1"], committed_version)
    assert offsets.app_id(0) == "marketstream:stock:t:i1:0"
    assert offsets.through("", 0) == 25 and offsets.through("", 1) == 7 and offsets.through("_synthetic", 0) == -1
    assert offsets.through("", 0) == 25
    assert len(asked) == 6  # two app ids for each of the three (table, partition): each asked once


def test_rows_at_or_below_what_is_committed_or_handed_over_are_not_stored_again():
    offsets = CommittedOffsets(["p"], lambda table, app_id: 4)
    rows = pa.table({"kafka_offset": [3, 4, 5, 6, 7]})
    assert offsets.not_stored("", 0, rows).column("kafka_offset").to_pylist() == [5, 6, 7]
    offsets.handed_over("", 0, 6)
    assert offsets.not_stored("", 0, rows).column("kafka_offset").to_pylist() == [7]
    offsets.handed_over("", 0, 5)  # never moves back
    assert offsets.through("", 0) == 6
    unordered = pa.table({"kafka_offset": [9, 5, 8, 6]})
    assert offsets.not_stored("", 0, unordered).column("kafka_offset").to_pylist() == [9, 8]
    newer = pa.table({"kafka_offset": [8, 7, 9]})
    assert offsets.not_stored("", 0, newer) is newer  # nothing replayed: the rows as they are, not copied


def test_a_merge_that_loses_races_is_tried_again_after_reloading_and_gives_up_after_the_limit():
    from deltalake.exceptions import CommitFailedError

    from sinks.delta_commits import MAX_LOST_RACES, racing

    outcomes = [CommitFailedError("Concurrent transaction"), CommitFailedError("Concurrent transaction"), "merged"]
    reloads, pauses = [], []

    def attempt():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert racing("a merge", attempt, again=lambda: reloads.append(1), sleep=pauses.append) == "merged"
    assert len(reloads) == 2 and pauses == [0.1, 0.2]

    def always_lost():
        raise CommitFailedError("Concurrent transaction")

    with pytest.raises(RuntimeError, match=f"lost {MAX_LOST_RACES} races"):
        racing("a merge", always_lost, sleep=lambda _: None)


def test_a_commit_that_lost_a_race_on_its_own_transaction_id_is_prepared_again_against_the_winners_table(tmp_path):
    """Two writers of one Kafka partition: the second one's commit, prepared on a table that did not yet hold
    the first one's, is refused by delta-rs and prepared again, and then leaves out what the first stored."""
    from sinks.delta_commits import Commit

    mine, other = committer(tmp_path), committer(tmp_path)
    assert mine.committed_version("app:0") == -1  # `mine` has loaded the table
    other.commit_files([upload(tmp_path, "A", range(0, 10))], {"app:0": 9})
    seen = []

    def fenced(table) -> Commit | None:
        stored = table.version("app:0")
        seen.append(stored)
        offsets = range(max(stored + 1, 5), 15)
        return Commit([upload(tmp_path, "A", offsets)], {"app:0": 14}) if offsets else None

    made = mine.commit(fenced)
    assert seen == [-1, 9] and made is not None
    read = DeltaTable(str(tmp_path))
    offsets = sorted(read.to_pyarrow_table().column("kafka_offset").to_pylist())
    assert offsets == list(range(15)) and read.transaction_version("app:0") == 14


def test_a_commit_whose_answer_was_lost_is_prepared_again_and_finds_itself_committed(tmp_path, monkeypatch):
    from sinks.delta_commits import Commit

    table = committer(tmp_path)
    calls = answer_lost_once(monkeypatch)
    seen = []

    def fenced(view) -> Commit | None:
        seen.append(view.version("app:0"))
        return None if seen[-1] >= 4 else Commit([upload(tmp_path, "A", range(0, 5))], {"app:0": 4})

    assert table.commit(fenced) is None
    assert seen == [-1, 4] and len(calls) == 1


def _waiting_for_the_table(table, calls) -> list:
    """Starts `calls` (functions of no argument calling `table.commit_together`) on threads while the test holds
    the table, and returns once all are queued; each thread's result or error lands in the returned list."""
    import threading
    import time

    outcomes = [None] * len(calls)

    def run(i):
        try:
            outcomes[i] = ("made", calls[i]())
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcomes[i] = ("raised", exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(table._queue) < len(calls) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(table._queue) == len(calls)
    return threads, outcomes


def test_writers_waiting_for_the_table_are_committed_together_each_with_its_own_files_and_versions(tmp_path):
    from sinks.delta_commits import Commit

    table = committer(tmp_path)
    first = DeltaTable(str(tmp_path)).version()
    files = {p: upload(tmp_path, "AB"[p % 2], range(p * 100, p * 100 + 5)) for p in range(3)}
    with table._lock:  # the table is busy with another commit while three writers arrive
        threads, outcomes = _waiting_for_the_table(table, [
            lambda p=p: table.commit_together(lambda view, p=p: Commit([files[p]], {f"app:{p}": p * 100 + 4}))
            for p in range(3)])
    for thread in threads:
        thread.join(10)
    assert [kind for kind, _ in outcomes] == ["made"] * 3
    assert [(made.adds[0].path, made.versions) for _, made in outcomes] == [
        (files[p].path, {f"app:{p}": p * 100 + 4}) for p in range(3)]
    read = DeltaTable(str(tmp_path))
    assert read.version() == first + 1  # one commit for the three
    assert [read.transaction_version(f"app:{p}") for p in range(3)] == [4, 104, 204]
    assert sorted(read.to_pyarrow_table().column("kafka_offset").to_pylist()) == [
        offset for p in range(3) for offset in range(p * 100, p * 100 + 5)]


def test_a_group_that_lost_a_race_is_prepared_again_and_a_writer_finding_its_rows_stored_gets_nothing(tmp_path):
    """Another process stores partition 0's rows while the group waits: on the newer table, partition 0's
    writer leaves its rows out, partition 1's still lands, in one commit."""
    from sinks.delta_commits import Commit

    mine, other = committer(tmp_path), committer(tmp_path)
    assert mine.committed_version("app:0") == -1
    seen = []

    def fenced(p):
        def prepare(view):
            stored = view.version(f"app:{p}")
            seen.append((p, stored))
            return None if stored >= 4 else Commit([upload(tmp_path, "A", range(p * 100, p * 100 + 5))], {f"app:{p}": 4})
        return prepare

    with mine._lock:
        threads, outcomes = _waiting_for_the_table(mine, [lambda p=p: mine.commit_together(fenced(p)) for p in range(2)])
        other.commit_files([upload(tmp_path, "A", range(0, 5))], {"app:0": 4})
    for thread in threads:
        thread.join(10)
    assert outcomes[0] == ("made", None) and outcomes[1][0] == "made" and outcomes[1][1].versions == {"app:1": 4}
    assert seen == [(0, -1), (1, -1), (0, 4), (1, -1)]  # refused by delta-rs, prepared again on the newer table
    read = DeltaTable(str(tmp_path))
    assert sorted(read.to_pyarrow_table().column("kafka_offset").to_pylist()) == [*range(5), *range(100, 105)]


def test_a_failure_of_the_group_commit_reaches_every_writer_of_it(tmp_path, monkeypatch):
    from sinks.delta_commits import Commit

    table = committer(tmp_path)

    def refused(self, *args, **kwargs):
        raise OSError("Generic S3 error: InvalidAccessKeyId: The Access Key Id you provided does not exist")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", refused)
    with table._lock:
        threads, outcomes = _waiting_for_the_table(table, [
            lambda p=p: table.commit_together(lambda view, p=p: Commit([upload(tmp_path, "A", range(p, p + 1))], {f"app:{p}": p}))
            for p in range(2)])
    for thread in threads:
        thread.join(10)
    assert [kind for kind, _ in outcomes] == ["raised", "raised"]
    assert all(isinstance(error, DeltaLakeError) for _, error in outcomes)


def test_only_appending_commits_are_made_together(tmp_path):
    from sinks.delta_commits import Commit

    table = committer(tmp_path)
    with pytest.raises(ValueError, match="only commits that append"):
        table.commit_together(lambda view: Commit([upload(tmp_path, "A", range(0, 1))], {"app": 0},
                                                  replacing=[("ticker", "in", ["A"])]))


def test_transaction_versions_are_read_from_the_store_once_per_snapshot_and_known_after_this_writers_own_commit(
        tmp_path, monkeypatch):
    from sinks.delta_commits import Commit

    reads, real = [], DeltaTable.transaction_version
    monkeypatch.setattr(DeltaTable, "transaction_version", lambda self, app: reads.append(app) or real(self, app))
    mine, other = committer(tmp_path), committer(tmp_path)
    seen = []

    def fenced(p, offsets):
        def prepare(view):
            stored = view.version(f"app:{p}"), view.version(f"app:{p}")  # asked twice: read once
            seen.append(stored[0])
            return Commit([upload(tmp_path, "A", offsets)], {f"app:{p}": offsets.stop - 1})
        return prepare

    mine.commit(fenced(0, range(0, 5)))
    assert reads == ["app:0"] and seen == [-1]
    mine.commit(fenced(0, range(5, 10)))  # the only commit since was this writer's own: its versions are known
    assert reads == ["app:0"] and seen == [-1, 4]
    other.commit_files([upload(tmp_path, "B", range(0, 3))], {"app:1": 2})
    reads.clear()
    mine.commit(fenced(1, range(3, 6)))  # another writer's commit came first: refused, read again on the newer table
    assert seen[-2:] == [-1, 2] and reads.count("app:1") == 2
    mine.commit(fenced(0, range(10, 12)))  # read again after the reload: still what `mine` committed
    assert seen[-1] == 9
    read = DeltaTable(str(tmp_path))
    assert (real(read, "app:0"), real(read, "app:1")) == (11, 5)


def test_a_table_made_by_its_writer_checkpoints_every_ten_commits_so_a_load_reads_few_commits(tmp_path):
    """Loading a table, and each question about its transaction versions, reads the last checkpoint and
    every commit after it: a restarted consumer of a table without checkpoints read them all."""
    table = committer(tmp_path)
    for batch in range(25):
        table.commit_files([upload(tmp_path, "A", range(batch * 10, batch * 10 + 10))], {"app:0": batch * 10 + 9})
    log = tmp_path / "_delta_log"
    assert DeltaTable(str(tmp_path)).metadata().configuration[CHECKPOINT_KEY] == "10"
    # the last one; older checkpoints and commits may be cleaned up already (by the files' age: a clock run
    # ahead finds them all expired)
    assert json.loads((log / "_last_checkpoint").read_text())["version"] == 19
    assert (log / f"{19:020d}.checkpoint.parquet").exists()
    for commit in range(0, 20):  # gone: loading starts at the last checkpoint
        (log / f"{commit:020d}.json").unlink(missing_ok=True)
    read = DeltaTable(str(tmp_path))
    assert read.version() == 25 and read.transaction_version("app:0") == 249
    assert read.to_pyarrow_table().num_rows == 250
