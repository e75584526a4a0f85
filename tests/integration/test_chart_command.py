"""`marketstream chart` as a user runs it (`main([...])`, in process) over bars tables on a MinIO of this
module's own: the file it writes, and where; what it refuses; no file when there is nothing to draw."""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from marketstream import schemas
from marketstream.settings import get_settings
from pipelines.cli import main
from tests.integration.private_lake import commands_on, started_minio
from tests.integration.private_servers import free_port

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 24)
OPEN = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)
REAL_MINUTES = [0, 1, 2, 62, 63]  # 09:30, 09:31, 09:32, then an hour without trades
SYNTHETIC_MINUTES = [600, 601]  # 00:30 and 00:31 the next day in UTC: 19:30 in New York, outside the session


def bars(ticker: str, minutes: list[int]) -> pa.Table:
    schema = pa.unify_schemas([schemas.BARS_PARTITIONING, schemas.BARS])
    rows = []
    for m in minutes:
        minute = OPEN + timedelta(minutes=m)
        rows.append({"ticker": ticker, "date": DAY, "minute": minute, "open": 100.0 + m, "high": 102.0 + m,
                     "low": 99.0 + m, "close": 101.0 + m, "volume": 10.0 * (m + 1), "trades": 3, "vwap": 100.5 + m,
                     "notional": 3015.0, "open_ts": minute, "open_offset": m, "close_ts": minute, "close_offset": m,
                     "first_offset": m, "last_offset": m})
    return pa.Table.from_pylist(rows, schema=schema)


@pytest.fixture(scope="module")
def minio(tmp_path_factory):
    server, settings = started_minio(tmp_path_factory.mktemp("minio"), ["bars-data"])
    options = settings.delta_storage_options()
    write_deltalake("s3://bars-data", bars("AAPL", REAL_MINUTES), partition_by=["ticker", "date"], storage_options=options)
    write_deltalake("s3://bars-data/_synthetic", bars("AAPL", SYNTHETIC_MINUTES), partition_by=["ticker", "date"],
                    storage_options=options)
    yield server
    server.stop()


@pytest.fixture
def folder(minio, monkeypatch, tmp_path):
    """The working folder of `main`, whose settings are this module's MinIO."""
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    (tmp_path / "a" / "elsewhere").mkdir()  # where `../../elsewhere/evil` would lead
    monkeypatch.chdir(work)
    with commands_on(minio, monkeypatch):
        yield work


def chart(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["chart", *args])
    out, err = capsys.readouterr()
    return code, out, err


def files_under(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(path, name), root) for path, _, names in os.walk(root) for name in names)


def candle_centres(page: str) -> list[float]:
    return [float(x) for x in re.findall(r'<g class="candle \w+"><title>[^<]*</title><line x1="([\d.]+)"', page)]


def test_the_chart_of_a_ticker_day_is_drawn_in_real_time_into_its_own_file(folder, capsys):
    code, out, err = chart(capsys, "AAPL", "--date", "2026-11-24")
    assert code == 0 and err == "" and "5 one-minute bars of AAPL on 2026-11-24 drawn into AAPL-2026-11-24.html" in out
    page = (folder / "AAPL-2026-11-24.html").read_text()
    x = candle_centres(page)
    assert len(x) == 5 and (x[3] - x[2]) / (x[1] - x[0]) == pytest.approx(60, rel=0.01)
    assert "<script" not in page and files_under(folder) == ["AAPL-2026-11-24.html"]


def test_synthetic_bars_go_to_a_file_of_their_own_and_leave_the_real_chart_alone(folder, capsys):
    assert chart(capsys, "AAPL", "--date", "2026-11-24")[0] == 0
    real = (folder / "AAPL-2026-11-24.html").read_text()
    code, out, _ = chart(capsys, "AAPL", "--date", "2026-11-24", "--synthetic")
    assert code == 0 and "drawn into AAPL-2026-11-24-synthetic.html" in out
    assert (folder / "AAPL-2026-11-24.html").read_text() == real
    synthetic = (folder / "AAPL-2026-11-24-synthetic.html").read_text()
    assert len(candle_centres(synthetic)) == 2 and "synthetic trades" in synthetic


@pytest.mark.parametrize("ticker", ["../../elsewhere/evil", "/tmp/evil", "aapl", "AAPL/../../x"])
def test_a_text_that_is_no_ticker_is_refused_and_nothing_is_written(folder, capsys, ticker):
    code, out, err = chart(capsys, ticker, "--date", "2026-11-24")
    assert code == 2 and out == "" and err.count("\n") == 1 and "is not a ticker" in err
    assert files_under(folder.parent.parent.parent) == []


def test_no_bars_writes_no_file_and_says_so_in_one_line(folder, capsys):
    code, out, err = chart(capsys, "MSFT", "--date", "2026-11-24")
    assert code == 1 and out == "" and files_under(folder) == []
    assert err == "marketstream chart: no bars of MSFT on 2026-11-24 in bars (s3://bars-data): nothing drawn\n"
    code, _, err = chart(capsys, "AAPL", "--date", "2026-11-25")
    assert code == 1 and err.count("\n") == 1 and files_under(folder) == []


def test_out_writes_that_file_and_nothing_else(folder, capsys):
    (folder / "charts").mkdir()
    code, out, _ = chart(capsys, "AAPL", "--date", "2026-11-24", "--out", "charts/apple.html")
    assert code == 0 and files_under(folder) == ["charts/apple.html"]
    code, _, err = chart(capsys, "AAPL", "--date", "2026-11-24", "--out", "missing/apple.html")
    assert code == 2 and "--out missing/apple.html: its folder missing does not exist" in err and err.count("\n") == 1


def test_with_the_store_down_the_chart_says_so_naming_s3_endpoint_url(folder, capsys, monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    code, out, err = chart(capsys, "AAPL", "--date", "2026-11-24")
    assert code == 3 and out == "" and err.count("\n") == 1 and "(S3_ENDPOINT_URL)" in err
    assert files_under(folder) == []
