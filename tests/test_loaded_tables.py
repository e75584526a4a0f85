"""`LoadedTables`: a table looked at again reads only its new commits, and is loaded afresh now and then;
`dataset_of`: a table's files read by pyarrow's own filesystem."""

import shutil

import pyarrow as pa
from deltalake import write_deltalake

import marketstream.lake as lake
from marketstream.lake import LoadedTables


def rows(n: int) -> pa.Table:
    return pa.table({"x": list(range(n))})


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def counting_loads(monkeypatch) -> list:
    loads, real = [], lake.delta_table_at
    monkeypatch.setattr(lake, "delta_table_at", lambda uri, options, kind=None: loads.append(uri) or real(uri, options, kind))
    return loads


def test_a_table_looked_at_again_moves_on_to_its_new_commits_without_loading_it_again(tmp_path, monkeypatch):
    loads, clock = counting_loads(monkeypatch), Clock()
    uri = str(tmp_path / "t")
    write_deltalake(uri, rows(3))
    tables = LoadedTables(reload_seconds=30, clock=clock)
    assert tables(uri, {}).version() == 0
    write_deltalake(uri, rows(2), mode="append")
    clock.now = 29
    table = tables(uri, {})
    assert table.version() == 1 and table.to_pyarrow_table().num_rows == 5
    assert len(loads) == 1


def test_a_table_made_anew_under_the_same_uri_is_seen_once_it_is_loaded_afresh(tmp_path, monkeypatch):
    loads, clock = counting_loads(monkeypatch), Clock()
    uri = str(tmp_path / "t")
    write_deltalake(uri, rows(3))
    write_deltalake(uri, rows(3), mode="append")
    tables = LoadedTables(reload_seconds=30, clock=clock)
    assert tables(uri, {}).version() == 1
    shutil.rmtree(uri)
    write_deltalake(uri, rows(1))  # version 0 of another table: no newer commit for the kept one
    clock.now = 10
    assert tables(uri, {}).version() == 1  # what was kept: at most `reload_seconds` old
    clock.now = 31
    table = tables(uri, {})
    assert table.version() == 0 and table.to_pyarrow_table().num_rows == 1
    assert len(loads) == 2


def test_a_missing_table_is_looked_for_again_each_time_and_seen_as_soon_as_it_is_made(tmp_path, monkeypatch):
    loads, clock = counting_loads(monkeypatch), Clock()
    uri = str(tmp_path / "t")
    tables = LoadedTables(reload_seconds=30, clock=clock)
    assert tables(uri, {}) is None
    write_deltalake(uri, rows(4))
    assert tables(uri, {}).to_pyarrow_table().num_rows == 4
    assert len(loads) == 2


def test_a_table_whose_update_fails_is_loaded_afresh(tmp_path, monkeypatch):
    loads, clock = counting_loads(monkeypatch), Clock()
    uri = str(tmp_path / "t")
    write_deltalake(uri, rows(3))
    tables = LoadedTables(reload_seconds=30, clock=clock)
    kept = tables(uri, {})
    monkeypatch.setattr(type(kept), "update_incremental", lambda self: (_ for _ in ()).throw(OSError("reset")))
    write_deltalake(uri, rows(2), mode="append")
    assert tables(uri, {}).version() == 1
    assert len(loads) == 2


def test_transaction_versions_are_read_once_while_the_table_does_not_change(tmp_path, monkeypatch):
    from deltalake import CommitProperties, DeltaTable, Transaction

    reads, real = [], DeltaTable.transaction_version
    monkeypatch.setattr(DeltaTable, "transaction_version", lambda self, app: reads.append(app) or real(self, app))
    uri = str(tmp_path / "t")
    write_deltalake(uri, rows(1), commit_properties=CommitProperties(app_transactions=[Transaction("app", 3)]))
    tables = LoadedTables(reload_seconds=30, clock=Clock())
    assert [tables(uri, {}).transaction_version("app") for _ in range(3)] == [3, 3, 3]
    assert reads == ["app"]
    write_deltalake(uri, rows(1), mode="append", commit_properties=CommitProperties(app_transactions=[Transaction("app", 7)]))
    assert tables(uri, {}).transaction_version("app") == 7 and reads == ["app", "app"]


def test_a_tables_dataset_is_read_by_pyarrows_own_filesystem_not_a_python_handler(tmp_path):
    """deltalake's default filesystem is a Python handler whose reads need the GIL on the scan's threads: DuckDB
    scanning it deadlocked once (an Arrow mutex against the GIL), and a scan left unfinished crashed at exit."""
    import pyarrow.fs as pafs
    from deltalake import DeltaTable, write_deltalake

    from marketstream.lake import dataset_of

    write_deltalake(str(tmp_path), pa.table({"ticker": ["A", "B", "A"], "price": [1.0, 2.0, 3.0]}), partition_by=["ticker"])
    table = DeltaTable(str(tmp_path))
    dataset = dataset_of(table, str(tmp_path), pafs.LocalFileSystem())
    assert isinstance(dataset.filesystem, pafs.SubTreeFileSystem) and not isinstance(dataset.filesystem, pafs.PyFileSystem)
    assert isinstance(table.to_pyarrow_dataset().filesystem, pafs.PyFileSystem)  # what the helper replaces
    assert sorted(dataset.to_table().column("price").to_pylist()) == [1.0, 2.0, 3.0]
