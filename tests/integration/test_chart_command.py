"""`marketstream chart` as a user runs it (`main([...])`, in process) over bars tables on a MinIO of this
module's own: the file it writes, and where; what it refuses; no file when there is nothing to draw; the
news and the signals' sentiment it draws once those tables exist."""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from marketstream import schemas
from marketstream.signals import compute
from pipelines.chart import SENTIMENT_HEIGHT
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


def news(ticker: str, minutes: dict[int, str]) -> pa.Table:
    """Articles of the news table's columns the chart and the signals read, one per minute: its headline."""
    return pa.Table.from_pylist(
        [{"ticker": ticker, "date": DAY, "id": 7000 + m, "datetime": OPEN + timedelta(minutes=m, seconds=20),
          "headline": headline, "source": "Wire", "url": f"https://news.example/{m}", "sentiment": 0.25 * (m % 3) - 0.25}
         for m, headline in minutes.items()],
        schema=pa.schema([*schemas.NEWS_ARTICLES_PARTITIONING, *(schemas.NEWS_ARTICLES.field(name) for name in
                          ("id", "datetime", "headline", "source", "url", "sentiment"))]))


NO_POSTS = pa.Table.from_pylist([], schema=pa.schema([schemas.BLUESKY_POSTS.field(name) for name in
                                                      ("uri", "created_at", "sentiment", "tickers")]))


@pytest.fixture(scope="module")
def minio(tmp_path_factory):
    server, settings = started_minio(tmp_path_factory.mktemp("minio"), ["bars-data", "finnhub-data", "signals-data"])
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
    assert code == 0 and err == "" and "5 one-minute bars and 0 news articles of AAPL on 2026-11-24 drawn into AAPL-2026-11-24.html" in out
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


def test_news_and_the_signals_sentiment_are_drawn_once_their_tables_exist(minio, folder, capsys):
    """A chart drawn before any news or signals (the tables do not exist yet) is the plain one; once the news
    and signals_synthetic tables hold rows, the next chart marks the minutes with news, lists every article
    (hostile text escaped) and draws the sentiment of the signals' minutes."""
    plain = chart(capsys, "AAPL", "--date", "2026-11-24", "--synthetic", "--out", "plain.html")
    assert plain[0] == 0 and "and 0 news articles" in plain[1]
    assert 'class="news"' not in (folder / "plain.html").read_text()
    settings = get_settings()
    options = settings.delta_storage_options()
    articles = news("AAPL", {600: "Apple <b>surges</b>", 601: "Apple slips", 100: "Morning note"})
    write_deltalake("s3://finnhub-data", articles, partition_by=["ticker", "date"], storage_options=options)
    signals = compute(bars("AAPL", SYNTHETIC_MINUTES), articles, NO_POSTS)
    write_deltalake("s3://signals-data/_synthetic", signals, partition_by=["ticker", "date"], storage_options=options)

    code, out, err = chart(capsys, "AAPL", "--date", "2026-11-24", "--synthetic")
    assert code == 0 and err == "" and "2 one-minute bars and 3 news articles of AAPL on 2026-11-24" in out
    page = (folder / "AAPL-2026-11-24-synthetic.html").read_text()
    assert re.findall(r'<g class="news"><title>([^<]*)</title>', page) == [
        "19:30 Apple &lt;b&gt;surges&lt;/b&gt;", "19:31 Apple slips"]  # the 11:10 article lies outside the axis
    assert re.findall(r"<li><time>(\d\d:\d\d)</time>", page) == ["11:10", "19:30", "19:31"]
    assert "<b>" not in page
    news_line = re.findall(r'<polyline class="sentiment news" points="([^"]*)"/>', page)
    assert len(news_line) == 1 and len(news_line[0].split()) == 2  # both minutes have a scored article
    assert 'class="sentiment posts"' not in page  # no post scored: no line
    zero = float(re.search(r'<line class="zero" x1="[\d.]+" x2="[\d.]+" y1="([\d.]+)"', page).group(1))
    drawn = [(zero - float(point.split(",")[1])) / (SENTIMENT_HEIGHT / 2) for point in news_line[0].split()]
    assert drawn == pytest.approx([-0.25, -0.125], abs=0.001)  # 19:30: its article; 19:31: the mean of both
