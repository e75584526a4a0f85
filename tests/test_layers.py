"""Imports point one way: the core (`marketstream/`) <- `sources/` and `sinks/` (never each other) <- the
flow builders and command line (`pipelines/`) and the dataflow declarations (`dataflows/`) <- the chaos soak
(`chaos/`, beside `bench/`), which imports none of the tests. The fake API servers (`fakes/`) import nothing
of the project; the command line's demo, the soak and the tests use them.

Every import counts, including those inside functions: a lazy import is still a dependency."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MAY_IMPORT = {
    "fakes": {"fakes"},
    "marketstream": {"marketstream"},
    "sources": {"marketstream", "sources"},
    "sinks": {"marketstream", "sinks"},
    "pipelines": {"marketstream", "sources", "sinks", "pipelines", "fakes"},
    "dataflows": {"marketstream", "sources", "sinks", "pipelines", "dataflows"},
    "chaos": {"marketstream", "sources", "sinks", "pipelines", "dataflows", "chaos", "fakes"},
}
PROJECT_PACKAGES = {*MAY_IMPORT, "bench", "tests"}


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(top-level package, line) of each absolute import of a project package in the module at `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(name.split(".")[0], node.lineno) for name in names if name.split(".")[0] in PROJECT_PACKAGES]
    return found


def wrong_way_imports(root: Path) -> list[str]:
    """`path:line: package imports other` for every import that points up or sideways."""
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((root / package).rglob("*.py")):
            for imported, line in imports_of(path):
                if imported not in allowed:
                    wrong.append(f"{path.relative_to(root)}:{line}: {package} imports {imported}")
    return wrong


def test_imports_point_one_way():
    assert wrong_way_imports(REPO) == []


def test_the_check_reports_the_chaos_soak_importing_a_test(tmp_path):
    (tmp_path / "chaos").mkdir()
    (tmp_path / "chaos" / "run.py").write_text("import pipelines.status\nfrom tests.integration import flows\n")
    assert wrong_way_imports(tmp_path) == ["chaos/run.py:2: chaos imports tests"]


def test_the_check_reports_an_import_pointing_up_even_inside_a_function(tmp_path):
    (tmp_path / "marketstream").mkdir()
    (tmp_path / "marketstream" / "calendar.py").write_text("def f():\n    from sinks.delta import Flush\n")
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "synthetic.py").write_text("import sinks.kafka_producer\nimport marketstream.settings\n")
    assert wrong_way_imports(tmp_path) == ["marketstream/calendar.py:2: marketstream imports sinks",
                                           "sources/synthetic.py:1: sources imports sinks"]


def test_a_consumer_does_not_load_the_producers_api_clients():
    """Each client library costs memory in every consumer process that imports it (atproto alone ~30 MB)."""
    code = ("import sys, dataflows.stock_consume, pipelines.consumer; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).resolve().parent.parent).stdout.split())
    assert "pyarrow" in loaded and "bytewax" in loaded
    assert not loaded & {"atproto", "atproto_client", "alpaca", "finnhub", "fredapi", "psycopg", "duckdb"}
