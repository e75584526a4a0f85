"""Committing to a Delta table and knowing what is committed, on a table in a local folder (no server)."""

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from sinks.delta_commits import CommittedOffsets, DeltaCommitter, DeltaLakeError, retrying
from sinks.delta import _FileToAdd, add_action
from sinks.delta_stats import file_stats
from sinks.files import encode_parquet

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
