"""`marketstream backfill` when the API fails, through the entry point (`main([...])`, stderr captured): a
warning line per retry, then exactly one error line naming the setting to check, never a traceback.

The tables go to a private MinIO: the command writes to the dataset's own bucket."""

import re
from datetime import datetime, timezone

import pytest

from marketstream.lake import lake_filesystem
from marketstream.settings import get_settings
from pipelines.cli import main
from tests.conftest import make_settings
from fakes.alpaca_rest import FakeAlpacaHistory
from fakes.finnhub import FakeFinnhub
from fakes.http import Reply
from tests.integration.private_servers import PrivateMinio, free_port
from tests.sources.clock import InstantClock

WARNING = re.compile(r"^\S+ \S+ WARNING sources\.pacing: (?P<api>.+?): (?P<what>.+) failed: (?P<why>.+); "
                     r"attempt (?P<attempt>\d+), next in (?P<wait>\d+) s$")
BACKOFF = [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
"""The waits within the default patience of 300 s: a ninth would end at 302 s."""


@pytest.fixture(scope="module")
def minio(stack, tmp_path_factory):
    with PrivateMinio(tmp_path_factory.mktemp("minio")) as server:
        yield server


@pytest.fixture
def cli(minio, monkeypatch, tmp_path, capsys):
    """Runs `marketstream backfill …` in this process against the private MinIO, with an instant clock;
    returns the exit status, stderr's lines and the waits (stdout is in `capsys`)."""
    import logging

    monkeypatch.chdir(tmp_path)  # no .env
    for name, value in minio.settings.items():
        monkeypatch.setenv(name.upper(), value)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*args: str, **env: str):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        clock = InstantClock()
        status = main(["backfill", *args], clock=clock)
        captured = capsys.readouterr()
        print(captured.out, end="")  # the summary, for a test that reads it
        return status, captured.err.splitlines(), clock.sleeps

    yield run
    get_settings.cache_clear()
    root.handlers[:], root.level = handlers, level
    store = lake_filesystem(make_settings(**minio.settings))
    for bucket in store.ls(""):
        store.rm(bucket, recursive=True)


TRADES = ("trades", "--start", "2026-11-20", "--end", "2026-11-20", "--tickers", "AAPL")
NEWS = ("news", "--start", "2026-11-20", "--end", "2026-11-20", "--tickers", "AAPL")


def assert_retried_then_stopped(lines: list[str], sleeps: list[float], setting: str, why: str) -> str:
    """Each line but the last a retry warning, in order; the last the one error line. Returns it."""
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    *warnings, last = [line for line in lines if "INFO" not in line.split(" ", 3)[2:3]]
    matches = [WARNING.match(line) for line in warnings]
    assert all(matches), "\n".join(warnings)
    assert [int(m["attempt"]) for m in matches] == list(range(1, len(sleeps) + 1))
    assert [float(m["wait"]) for m in matches] == sleeps
    assert all(f"({setting})" in m["api"] and why in m["why"] for m in matches)
    assert sum("marketstream backfill:" in line for line in lines) == 1
    assert last.startswith("marketstream backfill: ") and f"({setting})" in last and why in last
    assert last.endswith("the days done so far are kept: run it again to resume")
    return last


def test_alpaca_at_a_closed_port_is_retried_with_a_warning_each_time_then_stops_in_one_line(cli):
    status, lines, sleeps = cli(*TRADES, API_KEY_ALPACA="k", API_SECRET_ALPACA="s",
                                ALPACA_DATA_URL=f"http://127.0.0.1:{free_port()}")
    assert status == 1
    assert sleeps == BACKOFF
    last = assert_retried_then_stopped(lines, sleeps, "ALPACA_DATA_URL", "cannot connect: Connection refused")
    assert "kept failing on GET /v2/stocks/trades of AAPL" in last and "9 attempts" in last


def test_finnhub_at_a_closed_port_is_retried_with_a_warning_each_time_then_stops_in_one_line(cli):
    status, lines, sleeps = cli(*NEWS, FINNHUB_API_KEY="k", FINNHUB_API_URL=f"http://127.0.0.1:{free_port()}/api/v1")
    assert status == 1
    assert sleeps == BACKOFF
    last = assert_retried_then_stopped(lines, sleeps, "FINNHUB_API_URL", "cannot connect: Connection refused")
    assert "kept failing on company news of AAPL on 2026-11-20" in last


def test_the_patience_is_a_setting(cli):
    status, lines, sleeps = cli(*NEWS, FINNHUB_API_KEY="k", FINNHUB_API_URL=f"http://127.0.0.1:{free_port()}/api/v1",
                                BACKFILL_RETRY_MAX_SECONDS="20")
    assert status == 1 and sleeps == [2.0, 4.0, 8.0]
    assert "patience 20 s, BACKFILL_RETRY_MAX_SECONDS" in lines[-1]


def test_alpaca_failing_then_answering_completes_the_backfill(cli, capsys):
    with FakeAlpacaHistory() as fake:
        fake.add("AAPL", 1, datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc))
        fake.faults.extend([Reply(429, {"message": "slow down"}, headers={"Retry-After": "7"}),
                            Reply(503, {"message": "unavailable"}), Reply(drop=True)])
        status, lines, sleeps = cli(*TRADES, API_KEY_ALPACA=fake.key, API_SECRET_ALPACA=fake.secret,
                                    ALPACA_DATA_URL=fake.url, ALPACA_REQUESTS_PER_MINUTE="1000000")
    assert status == 0, "\n".join(lines)
    retries = [WARNING.match(line) for line in lines if WARNING.match(line)]
    assert [(m["why"].split(" {")[0], m["wait"]) for m in retries] == [
        ("HTTP 429", "7"), ("HTTP 503", "4"), ("the server closed the connection without answering", "8")]
    assert not any("Traceback" in line for line in lines)
    assert "1 records fetched, 1 rows inserted" in capsys.readouterr().out


def test_finnhub_failing_then_answering_completes_the_backfill(cli):
    with FakeFinnhub() as fake:
        fake.faults.extend([Reply(500, {"error": "internal"}), Reply(429, {"error": "limit"}, headers={"Retry-After": "3"})])
        status, lines, sleeps = cli(*NEWS, FINNHUB_API_KEY=fake.token, FINNHUB_API_URL=fake.api_url)
    assert status == 0, "\n".join(lines)
    assert [m["wait"] for m in map(WARNING.match, lines) if m] == ["2", "3"]
    assert not any("Traceback" in line for line in lines)


@pytest.mark.parametrize("what, env, names", [
    (TRADES, {"API_KEY_ALPACA": "wrong", "API_SECRET_ALPACA": "wrong"}, "API_KEY_ALPACA / API_SECRET_ALPACA"),
    (NEWS, {"FINNHUB_API_KEY": "wrong"}, "FINNHUB_API_KEY"),
])
def test_refused_keys_stop_at_once_in_one_line_naming_them(cli, what, env, names):
    with FakeAlpacaHistory() as alpaca, FakeFinnhub() as finnhub:
        status, lines, sleeps = cli(*what, **env, ALPACA_DATA_URL=alpaca.url, FINNHUB_API_URL=finnhub.api_url)
        requests = len(alpaca.requests) + len(finnhub.requests)
    assert status == 1 and sleeps == [] and requests == 1
    errors = [line for line in lines if "INFO" not in line]
    assert len(errors) == 1 and errors[0].startswith("marketstream backfill: ") and names in errors[0]
