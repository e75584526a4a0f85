"""Every code example of the README that reads the lake runs, against a lake with data in it, and prints
what the lake holds: the fenced `python` blocks, and the `marketstream` command lines (sql, status, chart,
maintain) of the `sh` blocks and of the shown terminal sessions (`$ marketstream …`), whose shown output
must have the shape of what the command prints, and whose shown exit status (`$ echo $?`) is its own.

The lake: a Kafka and a MinIO of this module's own (the examples name the product's topics and buckets),
trades produced into `stock_trades` and streamed by the trades consumer in many small commits, one-minute
bars written by the bars flow, in two parts; the commands run in a shell whose `date` prints an instant
between the two (the clock of the `--as-of` example). Markers just above a block: `<!-- needs: NAME -->`
leaves it out, with the reason shown (Spark is not installed here); `<!-- while: kafka-stopped -->` runs
its session with the broker stopped by SIGSTOP, as it was run for the README. A `marketstream` command
that writes the lake or runs a dataflow is named below as not run here, with the test that covers it.
"""

from __future__ import annotations

import ast
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import orjson
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from bytewax.testing import run_main
from deltalake import DeltaTable

from marketstream.datasets import BLUESKY, DATASETS, NEWS, STOCK, lake_tables
from marketstream.datasets import signals_tables as signals_uris
from marketstream.settings import Settings
from pipelines.bars import build_bars_flow
from pipelines.signals import run_round, signals_tables
from sinks.object_store import ObjectStore
from sinks.signals_table import SignalsWriter
from tests.conftest import STACK, clock_from, make_settings
from tests.integration.lake_writers import streamed, trade_messages
from tests.integration.private_lake import commands_on, started_minio
from tests.integration.private_servers import PrivateKafka, PrivateMinio
from tests.query_predicates import plain

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
RUN_HERE = ("sql", "status", "chart", "maintain")
"""Commands that read (or, maintain, keep up) the lake: each example of them runs here."""
NOT_RUN_HERE = {
    "backfill": "writes the lake from Alpaca's or Finnhub's API (tests/integration/test_backfill.py, against fakes)",
    "run": "starts a dataflow that runs until stopped (the Scaling out example's cluster: "
           "tests/integration/test_bytewax_cluster.py)",
    "demo": "the whole product for a minute (make demo)",
    "serve": "a web server that runs until stopped (tests/integration/test_console.py serves it, drives it in a "
             "browser, and runs `serve --host 0.0.0.0` without CONSOLE_TOKEN)",
}
MARKER = re.compile(r"<!--\s*(needs|while):\s*([\w-]+)\s*-->")
CONDITIONS = ("kafka-stopped",)
"""What a shown session may say it was run in: `kafka-stopped`, the broker stopped by SIGSTOP."""


@dataclass(frozen=True)
class Block:
    language: str
    line: int
    """The line of its opening fence, counted from 1."""
    text: str
    needs: str | None = None
    """What a `<!-- needs: NAME -->` just above it says it needs."""
    condition: str | None = None
    """What a `<!-- while: CONDITION -->` just above it says it was run in (one of `CONDITIONS`)."""


def fenced_blocks(markdown: str) -> list[Block]:
    lines, blocks, index = markdown.splitlines(), [], 0
    while index < len(lines):
        if not lines[index].startswith("```"):
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        above = next((line for line in reversed(lines[:index]) if line.strip()), "")
        marker = dict(MARKER.findall(above))
        blocks.append(Block(lines[index][3:].strip(), index + 1, "\n".join(lines[index + 1:end]),
                            marker.get("needs"), marker.get("while")))
        index = end + 1
    return blocks


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    """As typed at a shell prompt (continued lines joined)."""
    shown: tuple[str, ...] = ()
    """The output the README shows for it, if any."""
    shown_status: int | None = None
    """The exit status the README shows (`$ echo $?` after it), if any."""
    condition: str | None = None
    """What the session was run in, from its block's `<!-- while: … -->`."""

    @property
    def argv(self) -> list[str]:
        """Its words, unexpanded."""
        return shlex.split(self.text, comments=True)

    def words(self, env: dict[str, str]) -> list[str]:
        """Its words as the shell passes them, `$(…)` run in `env`."""
        done = subprocess.run(["bash", "-c", f"printf '%s\\0' {self.text}"], env=env, capture_output=True,
                              text=True, check=True, timeout=30)
        return done.stdout.split("\0")[:-1]


def commands(blocks: list[Block]) -> list[Command]:
    """The `marketstream` command lines of the `sh` blocks, and those typed after `$ ` in the shown terminal
    sessions (plain blocks), with the lines shown up to the next prompt."""
    found = []
    for block in blocks:
        lines = block.text.splitlines()
        for number, line in enumerate(lines):
            if block.language == "sh" and line.startswith("marketstream "):
                text, following = line, iter(lines[number + 1:])
                while text.endswith("\\"):
                    text = text[:-1] + next(following)
                found.append(Command(block.line + 1 + number, text))
            elif block.language == "" and line.startswith("$ marketstream "):
                following = lines[number + 1:]
                end = next((i for i, text in enumerate(following) if text.startswith("$ ")), len(following))
                status = following[end + 1] if following[end:end + 1] == ["$ echo $?"] else None
                found.append(Command(block.line + 1 + number, line[2:], tuple(following[:end]),
                                     None if status is None else int(status), block.condition))
    return found


BLOCKS = fenced_blocks(README.read_text(encoding="utf-8"))
COMMANDS = commands(BLOCKS)
PYTHON = [block for block in BLOCKS if block.language == "python"]


def test_every_marketstream_command_of_the_readme_is_run_here_or_named_as_not_run():
    kinds = Counter(command.argv[1] for command in COMMANDS)
    assert set(kinds) <= {*RUN_HERE, *NOT_RUN_HERE}, kinds
    assert {"sql", "status", "chart"} <= set(kinds), "the README shows how to query the lake"


@dataclass(frozen=True)
class Lake:
    settings: Settings
    minio: PrivateMinio
    kafka: PrivateKafka
    env: dict[str, str]
    """The environment the commands run in: the lake's servers, and a `date` that prints `between`."""
    between: datetime
    """An instant after the lake's first part was written and before the rest."""


NEWS_MESSAGES = [
    (ticker.encode(), orjson.dumps({"id": i + 1, "ticker": ticker, "datetime": f"2026-11-24T15:{i:02d}:00.000000Z",
                                    "headline": headline, "summary": "", "source": "Yahoo", "url": f"https://example.com/{i}",
                                    "image": "", "category": "company", "related": ticker}))
    for i, (ticker, headline) in enumerate([("AAPL", "Apple beats estimates, shares surge"), ("AAPL", "Apple sued over app fees"),
                                            ("MSFT", "Microsoft to hold its annual meeting")])]


POST_MESSAGES = [
    (keyword.encode(), orjson.dumps({"uri": f"at://did:plc:a/app.bsky.feed.post/{uri}", "cid": "c", "author_handle": "a.bsky.social",
                                     "author_did": "did:plc:a", "text": text, "created_at": "2026-11-24T15:00:00.000000Z",
                                     "indexed_at": "2026-11-24T15:00:01.000000Z", "like_count": 0, "repost_count": 0,
                                     "reply_count": 0, "language": "en", "keyword": keyword, "tickers": tickers}))
    for uri, keyword, tickers, text in [(1, "Tim Cook", ["AAPL"], "Tim Cook nailed it, great keynote"),
                                        (1, "earnings", ["*MARKET*"], "Tim Cook nailed it, great keynote"),
                                        (2, "AI", ["MSFT", "NVDA"], "AI stocks are a bubble, awful"),
                                        (3, "Apple", ["AAPL"], "Apple store opens at 9")]]


@pytest.fixture(scope="module")
def readme_lake(tmp_path_factory):
    """Trades streamed into `stock_trades` -> `stock-data` in many commits and bars in `bars-data`, in two
    parts with an instant between them; a few news articles in `finnhub` -> `finnhub-data` and posts in `bluesky` -> `bluesky-data`, no other topic;
    a round of signals over them. The shell's clock is injected:
    `date` prints that instant (the README's `--as-of` example asks `date` for "10 minutes ago")."""
    kafka = PrivateKafka(tmp_path_factory.mktemp("kafka"))
    kafka.start()
    minio, _ = started_minio(tmp_path_factory.mktemp("minio"), ())
    try:
        servers = {**minio.settings, "kafka_bootstrap_servers": kafka.bootstrap}
        settings = make_settings(**servers)
        trades = trade_messages(random.Random(11), 900, first_id=10**9)
        clock = clock_from(datetime(2026, 11, 25, 21, 30, tzinfo=timezone.utc))

        def written(part: list) -> None:
            streamed(settings, STOCK, STOCK.topic, part, rounds=4)
            run_main(build_bars_flow(settings.model_copy(update={"kafka_stop_at_end": True}), now=clock))

        written(trades[:600])
        time.sleep(1.5)  # the store dates commits to the second
        between = datetime.now(timezone.utc).replace(microsecond=0)
        time.sleep(1.5)
        written(trades[600:])
        streamed(settings, NEWS, NEWS.topic, NEWS_MESSAGES, rounds=1)  # scored for sentiment as they are stored
        streamed(settings, BLUESKY, BLUESKY.topic, POST_MESSAGES, rounds=1)
        for table in signals_tables(settings):  # a round of signals_consume over the bars, news and posts
            writer = SignalsWriter(table.uri, table.bucket, table.folder, settings.delta_storage_options(),
                                   ObjectStore(settings.s3_storage_options()))
            run_round(table, writer, settings.delta_storage_options())
        stock = DeltaTable("s3://stock-data", storage_options=settings.delta_storage_options())
        assert stock.version() >= 12, "the time-travel examples go back to version 12"
        shell_clock = tmp_path_factory.mktemp("bin")
        (shell_clock / "date").write_text(f"#!/bin/sh\necho {between:%Y-%m-%dT%H:%M:%SZ}\n")
        (shell_clock / "date").chmod(0o755)
        env = {**os.environ, **{name.upper(): str(value) for name, value in {**STACK, **servers}.items()},
               "PATH": f"{shell_clock}:{os.environ['PATH']}"}
        yield Lake(settings, minio, kafka, env, between)
    finally:
        minio.stop()
        kafka.stop()


def tables_asked(settings: Settings, argv: list[str]) -> dict[str, pa.Table]:
    """Every table of the lake read whole, as the command's `--version TABLE=N` and `--as-of TIME` ask."""
    pinned = dict(value.split("=", 1) for flag, value in zip(argv, argv[1:]) if flag == "--version")
    as_of = next((datetime.fromisoformat(value) for flag, value in zip(argv, argv[1:]) if flag == "--as-of"), None)
    read = {}
    views = {**lake_tables(settings.stock_synthetic_prefix, settings.bars_bucket),
             **signals_uris(settings.stock_synthetic_prefix, settings.signals_bucket)}
    for name, uri in views.items():
        try:
            table = DeltaTable(uri, storage_options=settings.delta_storage_options())
        except Exception:  # noqa: BLE001 - no such table (yet): the command sees none either
            continue
        if name in pinned:
            table.load_as_version(int(pinned[name]))
        elif as_of is not None:
            table.load_as_version(as_of)
        read[name] = table.to_pyarrow_table()
    return read


def check_sql(argv: list[str], settings: Settings, out: str, folder: Path) -> None:
    """The answer is the query's over whole reads of the tables: in the `--output` file (all its rows, exactly
    for parquet), or printed as a table, a line per row (in any order) holding the row's texts, whole numbers
    and dates."""
    connection = duckdb.connect()
    for name, table in tables_asked(settings, argv).items():
        connection.register(name, table)
    expected = connection.sql(argv[2]).to_arrow_table()
    if "--output" in argv:
        written = folder / argv[argv.index("--output") + 1]
        form = argv[argv.index("--format") + 1]
        answer = pq.read_table(written) if form == "parquet" else pa_csv.read_csv(written)
        assert answer.num_rows == expected.num_rows > 0 and answer.column_names == expected.column_names
        if form == "parquet":  # the Arrow types exactly, zoned timestamps in the lake's zone, UTC
            assert answer.schema == pa.schema([field.with_type(pa.timestamp(field.type.unit, "UTC"))
                                               if pa.types.is_timestamp(field.type) and field.type.tz else field
                                               for field in expected.schema])
            assert rows_of(answer) == rows_of(expected)
        return
    lines = out.strip().splitlines()
    assert len(lines) == 1 + expected.num_rows, out
    unmatched = [set(line.split()) for line in lines[1:]]
    for row in expected.to_pylist():  # in any order: not every example sorts
        words = {value.isoformat() if isinstance(value, date) else str(value) for value in row.values()
                 if isinstance(value, (str, int, date)) and not isinstance(value, bool)}
        line = next((line for line in unmatched if words <= line), None)
        assert line is not None, f"no line shows {row}:\n{out}"
        unmatched.remove(line)


def rows_of(table: pa.Table) -> Counter:
    return Counter(tuple(plain(value) for value in row.values()) for row in table.to_pylist())


def check_chart(argv: list[str], settings: Settings, out: str, folder: Path) -> None:
    """One candle per stored minute of the ticker-day, in the file the command names."""
    ticker, day = argv[2], date.fromisoformat(argv[argv.index("--date") + 1])
    bars = tables_asked(settings, [])["bars"].to_pylist()
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


def check_status(command: Command, settings: Settings, out: str, errors: str, status: int) -> None:
    """Each dataset with its topic, tables and dead letters; the stock table's true row count; exit 1 with an
    ALERT line for each threshold passed (3 with a line naming KAFKA_BOOTSTRAP_SERVERS when Kafka could not
    be read); the exit status the README shows; every line it shows (but its elisions and alerts, which
    depend on the hour) has the shape of a line printed (the lake has topics with messages, an empty one and
    missing ones, tables with rows and missing ones)."""
    lines = out.strip().splitlines()
    alerts = [line for line in lines if line.startswith("ALERT ")]
    unread = "(KAFKA_BOOTSTRAP_SERVERS)" in errors
    assert status == (3 if unread else 1 if alerts else 0), out + errors
    assert command.shown_status in (None, status), f"README.md:{command.line} shows exit {command.shown_status}"
    rows = tables_asked(settings, [])["stock"].num_rows
    assert "  table stock (s3://stock-data): " in out and f", {rows:,} rows, " in out, out
    printed = {shape(line) for line in (out + errors).splitlines()}
    for line in command.shown:
        if line.strip() in ("...", "") or line.startswith("ALERT "):
            continue
        assert shape(line) in printed, f"README.md:{command.line} shows {line!r}, which the command never prints:\n{out}{errors}"


def check_maintain(settings: Settings, out: str, before: dict[str, pa.Table]) -> None:
    """A line per table; not a row changed."""
    assert re.search(r"^==> \w+: version \d+ -> \d+, files \d+ -> \d+", out, re.MULTILINE), out
    after = tables_asked(settings, [])
    assert {name: table.num_rows for name, table in after.items()} == {
        name: table.num_rows for name, table in before.items()}


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.argv[1] in RUN_HERE], ids=lambda c: f"README.md:{c.line}")
def test_each_command_runs_and_prints_what_the_lake_holds(readme_lake, command, tmp_path):
    lake = readme_lake
    before = tables_asked(lake.settings, [])
    argv = command.words(lake.env)
    assert command.condition in (None, *CONDITIONS), f"README.md:{command.line}: no such condition {command.condition}"
    if command.condition == "kafka-stopped":
        lake.kafka.process.send_signal(signal.SIGSTOP)
    try:
        done = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv[1:]], cwd=tmp_path, env=lake.env,
                              capture_output=True, text=True, timeout=300)
    finally:
        lake.kafka.process.send_signal(signal.SIGCONT)
    where = f"README.md:{command.line}: {command.text}\n{done.stdout}{done.stderr}"
    assert done.stdout.strip() or "--output" in argv, where
    kind = argv[1]
    if kind == "status":
        check_status(command, lake.settings, done.stdout, done.stderr, done.returncode)
        return
    assert done.returncode == 0, where
    if kind == "sql":
        check_sql(argv, lake.settings, done.stdout, tmp_path)
    elif kind == "chart":
        check_chart(argv, lake.settings, done.stdout, tmp_path)
    else:
        check_maintain(lake.settings, done.stdout, before)


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
    settings = readme_lake.settings
    monkeypatch.chdir(tmp_path)  # the examples read no .env but the environment's
    with commands_on(readme_lake.minio, monkeypatch):
        namespace, shown = run_as_typed(block)
    results = [*((text, value) for text, value in shown), *namespace.items()]
    for text, value in results:
        assert rows_in(value) != 0, f"README.md:{block.line}: {text} holds no row"
    assert any(rows_in(value) for _, value in results), "the example reads something"

    trades = tables_asked(settings, [])["stock"].to_pylist()
    aapl = [trade for trade in trades if trade["ticker"] == "AAPL"]
    on_the_day = [trade for trade in aapl if trade["date"] == date(2026, 11, 24)]
    for text, value in results:  # the pandas example reads AAPL's day of 2026-11-24, the polars one all of AAPL
        if isinstance(value, pd.DataFrame):
            assert set(value["ticker"]) == {"AAPL"} and set(value["date"]) == {date(2026, 11, 24)}, text
            assert len(value) == len(on_the_day) > 0, text
        if isinstance(value, pl.DataFrame):
            assert value["ticker"].unique().to_list() == ["AAPL"] and len(value) == len(aapl), text
