"""Every code example of the README that reads the lake runs, against a lake with data in it, and prints
what the lake holds: the fenced `python` blocks, and the `marketstream` command lines (sql, status, chart,
maintain) of the `sh` blocks and of the shown terminal sessions (`$ marketstream …`), whose shown output
must have the shape of what the command prints.

The lake: a Kafka and a MinIO of this module's own (the examples name the product's topics and buckets),
trades produced into `stock_trades` and streamed by the trades consumer in many small commits, one-minute
bars written by the bars flow. A block marked `<!-- needs: NAME -->` just above it is left out, with the
reason shown (Spark is not installed here); a `marketstream` command that writes the lake or runs a
dataflow is named below as not run here, with the test that covers it.
"""

from __future__ import annotations

import ast
import os
import random
import re
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from bytewax.testing import run_main
from deltalake import DeltaTable

from marketstream.datasets import DATASETS, NEWS, STOCK, lake_tables
from pipelines.bars import build_bars_flow
from tests.conftest import STACK, clock_from, make_settings
from tests.integration.command_line import command_line_reading, environment
from tests.integration.lake_writers import streamed, trade_messages
from tests.integration.private_servers import PrivateKafka, PrivateMinio

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
RUN_HERE = ("sql", "status", "chart", "maintain")
"""Commands that read (or, maintain, keep up) the lake: each example of them runs here."""
NOT_RUN_HERE = {
    "backfill": "writes the lake from Alpaca's or Finnhub's API (tests/integration/test_backfill.py, against fakes)",
    "run": "starts a dataflow that runs until stopped (tests/integration/test_processes.py)",
    "demo": "the whole product for a minute (make demo)",
}
NEEDS = re.compile(r"<!--\s*needs:\s*([\w-]+)\s*-->")


@dataclass(frozen=True)
class Block:
    language: str
    line: int
    """The line of its opening fence, counted from 1."""
    text: str
    needs: str | None
    """What a `<!-- needs: NAME -->` just above it says it needs."""


def fenced_blocks(markdown: str) -> list[Block]:
    lines, blocks, index = markdown.splitlines(), [], 0
    while index < len(lines):
        if not lines[index].startswith("```"):
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        above = next((line for line in reversed(lines[:index]) if line.strip()), "")
        marker = NEEDS.search(above)
        blocks.append(Block(lines[index][3:].strip(), index + 1, "\n".join(lines[index + 1:end]),
                            marker.group(1) if marker else None))
        index = end + 1
    return blocks


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    shown: tuple[str, ...] = ()
    """The output the README shows for it, if any."""

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)


def commands(blocks: list[Block]) -> list[Command]:
    """The `marketstream` command lines of the `sh` blocks, and those typed after `$ ` in the shown terminal
    sessions (plain blocks), with the lines shown up to the next prompt."""
    found = []
    for block in blocks:
        lines = block.text.splitlines()
        for number, line in enumerate(lines):
            if block.language == "sh" and line.startswith("marketstream "):
                found.append(Command(block.line + 1 + number, line))
            elif block.language == "" and line.startswith("$ marketstream "):
                following = lines[number + 1:]
                shown = following[:next((i for i, text in enumerate(following) if text.startswith("$ ")), len(following))]
                found.append(Command(block.line + 1 + number, line[2:], tuple(shown)))
    return found


BLOCKS = fenced_blocks(README.read_text(encoding="utf-8"))
COMMANDS = commands(BLOCKS)
PYTHON = [block for block in BLOCKS if block.language == "python"]


def test_every_marketstream_command_of_the_readme_is_run_here_or_named_as_not_run():
    kinds = Counter(command.argv[1] for command in COMMANDS)
    assert set(kinds) <= {*RUN_HERE, *NOT_RUN_HERE}, kinds
    assert {"sql", "status", "chart"} <= set(kinds), "the README shows how to query the lake"


@pytest.fixture(scope="module")
def readme_lake(tmp_path_factory):
    """Trades streamed into `stock_trades` -> `stock-data` in many commits, bars in `bars-data`, an empty
    `finnhub` topic; settings and the environment the examples run in."""
    kafka = PrivateKafka(tmp_path_factory.mktemp("kafka"))
    minio = PrivateMinio(tmp_path_factory.mktemp("minio"))
    kafka.start()
    minio.start()
    try:
        servers = {**minio.settings, "kafka_bootstrap_servers": kafka.bootstrap}
        settings = make_settings(**servers)
        streamed(settings, STOCK, STOCK.topic, trade_messages(random.Random(11), 900, first_id=10**9), rounds=6)
        bars = settings.model_copy(update={"kafka_stop_at_end": True})
        run_main(build_bars_flow(bars, now=clock_from(datetime(2026, 11, 25, 21, 30, tzinfo=timezone.utc))))
        settings.kafka_cluster().ensure_topics([NEWS.topic])  # and no other: topics empty and missing
        stock = DeltaTable("s3://stock-data", storage_options=settings.delta_storage_options())
        assert stock.version() >= 12, "the time-travel examples go back to version 12"
        with command_line_reading(**{**STACK, **servers}):
            yield settings, {**os.environ, **environment(**{**STACK, **servers})}
    finally:
        minio.stop()
        kafka.stop()


def full_tables(settings, version: int | None = None, only: dict[str, int] | None = None) -> dict[str, pa.Table]:
    """Every table of the lake that exists, read whole (as of `version`, or `only`'s version per table)."""
    read = {}
    for name, uri in lake_tables(settings.stock_synthetic_prefix, settings.bars_bucket).items():
        pinned = (only or {}).get(name, version)
        try:
            read[name] = DeltaTable(uri, version=pinned, storage_options=settings.delta_storage_options()).to_pyarrow_table()
        except Exception:  # noqa: BLE001 - no such table (yet): the command sees none either
            continue
    return read


def versions_asked(argv: list[str]) -> tuple[int | None, dict[str, int]]:
    """`--version N` (every table) or `--version TABLE=N` (one each)."""
    every, each = None, {}
    for flag, value in zip(argv, argv[1:]):
        if flag == "--version":
            if "=" in value:
                table, number = value.split("=", 1)
                each[table] = int(number)
            else:
                every = int(value)
    return every, each


def check_sql(command: Command, settings, out: str) -> None:
    """The printed table holds the query's answer over whole reads of the tables: a line per row, each
    with the row's texts, whole numbers and dates."""
    query = command.argv[2]
    connection = duckdb.connect()
    for name, table in full_tables(settings, *versions_asked(command.argv)).items():
        connection.register(name, table)
    expected = connection.sql(query).fetchall()
    lines = out.strip().splitlines()
    assert len(lines) == 1 + len(expected), out
    for line, row in zip(lines[1:], expected):
        words = line.split()
        for value in row:
            if isinstance(value, (str, int, date)) and not isinstance(value, bool):
                assert (value.isoformat() if isinstance(value, date) else str(value)) in words, (line, row)


def check_chart(command: Command, settings, out: str, folder: Path) -> None:
    """One candle per stored minute of the ticker-day, in the file the command names."""
    ticker, day = command.argv[2], date.fromisoformat(command.argv[command.argv.index("--date") + 1])
    bars = full_tables(settings)["bars"].to_pylist()
    minutes = sum(1 for bar in bars if bar["ticker"] == ticker and bar["date"] == day)
    drawn = re.search(r"drawn into (\S+)", out)
    assert minutes > 0 and drawn, out
    assert (folder / drawn.group(1)).read_text(encoding="utf-8").count('class="candle ') == minutes


def lake_names() -> list[str]:
    """The datasets', topics' and tables' names and the tables' URIs, longest first."""
    names = {name for dataset in DATASETS.values() for name in (dataset.name, dataset.topic, dataset.dead_letter_topic)}
    for name, uri in lake_tables("_synthetic").items():
        names |= {name, uri}
    return sorted(names, key=len, reverse=True)


NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
NAMED = re.compile(r"(?<![\w/-])(" + "|".join(map(re.escape, lake_names())) + r")(?![\w/-])")


def shape(line: str) -> str:
    """A status line with its figures, ages and the names of its dataset, topic and tables left out: what a
    line of that kind prints whatever the lake holds."""
    line = NAMED.sub("<name>", line)
    line = re.sub(NUMBER + r" (?:d|h|min|s) ago", "# ago", line)
    return re.sub(NUMBER, "#", line)


def check_status(command: Command, settings, out: str, status: int) -> None:
    """Each dataset with its topic, tables and dead letters; the stock table's true row count; exit 1 with an
    ALERT line for each threshold passed; every line the README shows (but its elisions and alerts, which
    depend on the hour) has the shape of a line printed (the lake has topics with messages, an empty one and
    missing ones, tables with rows and missing ones)."""
    lines = out.strip().splitlines()
    alerts = [line for line in lines if line.startswith("ALERT ")]
    assert status == (1 if alerts else 0), out
    rows = full_tables(settings)["stock"].num_rows
    assert "  table stock (s3://stock-data): " in out and f", {rows:,} rows, " in out, out
    printed = {shape(line) for line in lines}
    for line in command.shown:
        if line.strip() in ("...", "") or line.startswith(("ALERT ", "$ ")) or line.strip().isdigit():
            continue
        assert shape(line) in printed, f"README.md:{command.line} shows {line!r}, which the command never prints:\n{out}"


def check_maintain(command: Command, settings, out: str, before: dict[str, pa.Table]) -> None:
    """A line per table; not a row changed."""
    assert re.search(r"^==> \w+: version \d+ -> \d+, files \d+ -> \d+", out, re.MULTILINE), out
    after = full_tables(settings)
    assert {name: table.num_rows for name, table in after.items()} == {
        name: table.num_rows for name, table in before.items()}


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.argv[1] in RUN_HERE], ids=lambda c: f"README.md:{c.line}")
def test_each_command_runs_and_prints_what_the_lake_holds(readme_lake, command, tmp_path):
    settings, env = readme_lake
    before = full_tables(settings)
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *command.argv[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    where = f"README.md:{command.line}: {command.text}\n{done.stdout}{done.stderr}"
    assert done.stdout.strip(), where
    kind = command.argv[1]
    if kind == "status":
        check_status(command, settings, done.stdout, done.returncode)
        return
    assert done.returncode == 0, where
    if kind == "sql":
        check_sql(command, settings, done.stdout)
    elif kind == "chart":
        check_chart(command, settings, done.stdout, tmp_path)
    else:
        check_maintain(command, settings, done.stdout, before)


def run_as_typed(block: Block) -> tuple[dict, list[tuple[str, object]]]:
    """Run the block statement by statement, as typed at the Python prompt: the names it binds, and each
    expression statement's text and the value the prompt would show. Tracebacks name README lines."""
    tree = ast.parse(block.text)
    ast.increment_lineno(tree, block.line)
    namespace, shown = {"__name__": "__readme__"}, []
    for statement in tree.body:
        if isinstance(statement, ast.Expr):
            value = eval(compile(ast.Expression(statement.value), str(README), "eval"), namespace)
            shown.append((f"README.md:{statement.lineno}: {ast.unparse(statement)}", value))
        else:
            exec(compile(ast.Module([statement], []), str(README), "exec"), namespace)
    return namespace, shown


def rows_in(value: object) -> int | None:
    """How many rows a result holds, for the results the README's readers give; None for anything else."""
    if isinstance(value, (pd.DataFrame, pl.DataFrame)):
        return len(value)
    if isinstance(value, pa.Table):
        return value.num_rows
    if isinstance(value, duckdb.DuckDBPyRelation):
        return len(value.fetchall())
    return None


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: f"README.md:{b.line}")
def test_each_python_example_runs_and_gives_what_the_lake_holds(readme_lake, block, monkeypatch, tmp_path):
    if block.needs:
        pytest.skip(f"README.md:{block.line} needs {block.needs}, which this machine does not install")
    settings, _ = readme_lake
    monkeypatch.chdir(tmp_path)  # the examples read no .env but the environment's
    namespace, shown = run_as_typed(block)
    results = [*((text, value) for text, value in shown), *namespace.items()]
    for text, value in results:
        assert rows_in(value) != 0, f"README.md:{block.line}: {text} holds no row"
    assert any(rows_in(value) for _, value in results), "the example reads something"

    trades = full_tables(settings)["stock"].to_pylist()
    aapl = [trade for trade in trades if trade["ticker"] == "AAPL"]
    on_the_day = [trade for trade in aapl if trade["date"] == date(2026, 11, 24)]
    for text, value in results:  # the pandas example reads AAPL's day of 2026-11-24, the polars one all of AAPL
        if isinstance(value, pd.DataFrame):
            assert set(value["ticker"]) == {"AAPL"} and set(value["date"]) == {date(2026, 11, 24)}, text
            assert len(value) == len(on_the_day) > 0, text
        if isinstance(value, pl.DataFrame):
            assert value["ticker"].unique().to_list() == ["AAPL"] and len(value) == len(aapl), text
