"""`sinks.stored_keys` against real Delta tables on MinIO: what it says a partition holds is what the table
holds, whatever this writer, another writer and compaction did in between (generated sequences)."""

import uuid
from datetime import date

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from marketstream.lake import lake_filesystem
from sinks.delta_commits import TableView
from sinks.stored_keys import StoredKeys

DAYS = (date(2026, 11, 24), date(2026, 11, 25))
SCHEMA = pa.schema([pa.field("date", pa.date32()), pa.field("uri", pa.string()), pa.field("n", pa.int64())])


class CountingView(TableView):
    """A real table view that counts the partition reads it is asked for."""

    reads = 0

    def read(self, filters, columns=None):
        CountingView.reads += 1
        return super().read(filters, columns)


def rows(day: date, uris: list[str]) -> pa.Table:
    return pa.table({"date": [day] * len(uris), "uri": uris, "n": list(range(len(uris)))}, schema=SCHEMA)


def view(uri: str, options: dict) -> CountingView:
    return CountingView(DeltaTable(uri, storage_options=options), uri, lambda seconds: None)


def files_of(uri: str, options: dict) -> set[str]:
    table = DeltaTable(uri, storage_options=options)
    prefix = table.table_uri.rstrip("/") + "/"
    return {path.removeprefix(prefix) for path in table.file_uris()}


def own_commit(stored: StoredKeys, uri: str, options: dict, day: date, uris: list[str]) -> list[str]:
    """What the lake sink does: leave out the keys the partition holds, commit the rest, tell `stored`.
    Returns the uris committed."""
    check = stored.check(view(uri, options))
    new = check.new_rows((("date", day),), rows(day, uris))
    if new.num_rows:
        before = files_of(uri, options)
        write_deltalake(uri, new, mode="append", partition_by=["date"], storage_options=options)
        (path,) = files_of(uri, options) - before
        check.adding(path, new)
        stored.committed(check, [path])
    return new.column("uri").to_pylist()


KEY = st.sampled_from([f"at://post/{i}" for i in range(12)])
STEP = st.one_of(
    st.tuples(st.just("own"), st.sampled_from(DAYS), st.lists(KEY, max_size=6)),
    st.tuples(st.just("other writer"), st.sampled_from(DAYS), st.lists(KEY, min_size=1, max_size=4)),
    st.tuples(st.just("compaction"), st.just(None), st.just([])),
)


@hypothesis_settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=6))
def test_a_partition_holds_what_stored_keys_says_whoever_wrote_it(lake, steps):
    settings, _, bucket = lake
    options = settings.delta_storage_options()
    lake_filesystem(settings).makedirs(bucket, exist_ok=True)
    uri = f"s3://{bucket}/t{uuid.uuid4().hex[:8]}"
    write_deltalake(uri, rows(DAYS[0], []), partition_by=["date"], storage_options=options)
    stored = StoredKeys(("uri",))
    held = {day: [] for day in DAYS}  # every row the table holds, by partition
    for kind, day, uris in steps:
        if kind == "own":
            committed = own_commit(stored, uri, options, day, uris)
            # the keys left out are exactly those held, and a key repeated in one commit is kept once
            assert committed == [u for i, u in enumerate(uris) if u not in held[day] and u not in uris[:i]]
            held[day] += committed
        elif kind == "other writer":  # a writer that checks nothing: the table may hold a key twice now
            write_deltalake(uri, rows(day, uris), mode="append", partition_by=["date"], storage_options=options)
            held[day] += uris
        else:
            DeltaTable(uri, storage_options=options).optimize.compact()
        for each in DAYS:
            assert stored.held(view(uri, options), (("date", each),)) == {(u,) for u in held[each]}
    table = DeltaTable(uri, storage_options=options).to_pyarrow_table()
    assert sorted(zip(table.column("date").to_pylist(), table.column("uri").to_pylist())) == sorted(
        (day, u) for day in DAYS for u in held[day])


def test_this_writers_own_commits_are_learned_without_reading_the_partition_again(lake):
    settings, _, bucket = lake
    options = settings.delta_storage_options()
    lake_filesystem(settings).makedirs(bucket, exist_ok=True)
    uri = f"s3://{bucket}/own"
    write_deltalake(uri, rows(DAYS[0], ["at://a"]), partition_by=["date"], storage_options=options)
    stored = StoredKeys(("uri",))
    CountingView.reads = 0
    assert own_commit(stored, uri, options, DAYS[0], ["at://a", "at://b"]) == ["at://b"]
    assert CountingView.reads == 1  # the first commit to the partition reads what it holds
    for n in range(3):
        assert own_commit(stored, uri, options, DAYS[0], ["at://b", f"at://c{n}"]) == [f"at://c{n}"]
    assert CountingView.reads == 1
    write_deltalake(uri, rows(DAYS[0], ["at://d"]), mode="append", partition_by=["date"], storage_options=options)
    assert own_commit(stored, uri, options, DAYS[0], ["at://d", "at://e"]) == ["at://e"]
    assert CountingView.reads == 2  # another writer's file: read again
