"""The console reads a commit as its log entry says it, for entries delta-rs itself writes (a local table)."""

import json

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

from marketstream.lake import MAINTENANCE_COMMIT
from pipelines.console.data import commit_facts


def entry(path, version: int) -> str:
    return (path / "_delta_log" / f"{version:020d}.json").read_text()


def test_a_compaction_is_a_maintenance_run_with_the_files_and_bytes_it_replaced(tmp_path):
    for value in range(3):
        write_deltalake(tmp_path, pa.table({"day": ["2026-11-24"] * 2, "x": [value, value]}), mode="append",
                        partition_by=["day"])
    DeltaTable(tmp_path).optimize.compact()
    metrics = json.loads(entry(tmp_path, 3).splitlines()[0])["commitInfo"]["operationMetrics"]
    facts = commit_facts(entry(tmp_path, 3))
    assert (facts["operation"], facts["maintenance"]) == ("OPTIMIZE", True)
    assert (facts["files_removed"], facts["files_added"]) == (3, 1) == (metrics["numFilesRemoved"], metrics["numFilesAdded"])
    assert facts["bytes_removed"] == json.loads(metrics["filesRemoved"])["totalSize"]
    assert facts["bytes_added"] == json.loads(metrics["filesAdded"])["totalSize"]
    assert commit_facts(entry(tmp_path, 2))["maintenance"] is False  # an append


def test_a_commit_marked_as_maintenance_is_one_whatever_its_operation(tmp_path):
    write_deltalake(tmp_path, pa.table({"x": [1]}))
    table = DeltaTable(tmp_path)
    table.create_write_transaction([], mode="append", schema=table.schema(), partition_by=[],
                                   commit_properties=CommitProperties(custom_metadata={MAINTENANCE_COMMIT: "rewrite"}))
    facts = commit_facts(entry(tmp_path, 1))
    assert (facts["operation"], facts["maintenance"]) == ("WRITE (rewrite)", True)
