"""The console's web application (Starlette): five pages, each a static shell whose script asks the JSON
API below and writes what it answers into the page as text (never as markup), so no text of the lake or of
Kafka (a dead letter's bytes, a ticker, a reason) can become markup or script; the Content-Security-Policy
allows scripts from the console itself only, so an injected script would not run either. The charting
library (TradingView's lightweight-charts) is served from the package: nothing is fetched from elsewhere.

    GET  /  /ticker  /tables  /dead-letters  /sql      the pages
    GET  /api/overview                                 `marketstream status`'s data, refreshed continuously
    GET  /api/bars?ticker=AAPL&date=2026-11-24[&synthetic=1]
    GET  /api/news?ticker=AAPL&date=2026-11-24[&synthetic=1]   its news and the signals' sentiment
    GET  /api/tables     GET /api/dead-letters
    GET  /api/dead-letter-original?uri=s3://stock-data/_dead_letters/...   an original too large for the broker
    POST /api/sql        {"query": "..."} -> columns, rows (at most 1 000), cut, seconds
    POST /api/sql.csv    {"query": "..."} -> the same rows as CSV
"""

from __future__ import annotations

import contextlib
import io
from datetime import date, datetime, timezone
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from marketstream.lake import LoadedTables
from marketstream.settings import Settings
from pipelines.console import data
from pipelines.console.access import TokenRequired

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": ("overview", "Overview"), "/ticker": ("ticker", "Ticker"), "/tables": ("tables", "Tables"),
         "/dead-letters": ("dead-letters", "Dead letters"), "/sql": ("sql", "SQL")}
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
          "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


FIRST_ASKED = {"overview": "/api/overview", "tables": "/api/tables", "dead-letters": "/api/dead-letters"}
"""What a page's script asks first, always the same: the browser is told to ask it at once, while it loads the
script (`preload`, which the script's fetch then takes), instead of once the script runs."""


def _shell(page: str, title: str) -> str:
    links = "".join(f'<a href="{path}"{" class=current" if name == page else ""}>{label}</a>'
                    for path, (name, label) in PAGES.items())
    charts = '<script src="/static/lightweight-charts.standalone.production.js"></script>' if page == "ticker" else ""
    asked = (f'<link rel="preload" href="{FIRST_ASKED[page]}" as="fetch" crossorigin="anonymous">'
             if page in FIRST_ASKED else "")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>marketstream · {title}</title>'
            f'{asked}<link rel="stylesheet" href="/static/console.css"></head><body data-page="{page}">'
            f'<header><b>marketstream</b><nav>{links}</nav><span id="state"></span></header>'
            f'<main id="main"></main>{charts}<script src="/static/console.js"></script></body></html>')


class Headers:
    """Security headers on every answer: the policy above, no sniffing, no framing, no referrer."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def sending(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"content-security-policy", POLICY.encode()),
                                      (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                                      (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store")]
            await send(message)

        await self.app(scope, receive, sending)


def _problem(text: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status)


def create_app(settings: Settings, *, refresher: data.Refresher | None = None):
    """The console over the Kafka and lake of `settings`; the overview is refreshed in a thread of its own
    while the application runs. Wrapped in the token check when CONSOLE_TOKEN is set."""
    # refreshed several times a second: each round reads only the tables' new commits
    loaded = LoadedTables()
    refresher = refresher or data.Refresher(lambda: data.overview(settings, open_table=loaded))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        refresher.start()
        try:
            yield
        finally:
            await run_in_threadpool(refresher.stop)

    def page(name: str, title: str):
        async def endpoint(request: Request) -> HTMLResponse:
            return HTMLResponse(_shell(name, title))
        return endpoint

    async def overview(request: Request) -> JSONResponse:
        found = await run_in_threadpool(refresher.latest, 20.0)
        if found is None:
            return _problem("the overview is not read yet", 503)
        return JSONResponse(found)

    async def _ticker_day(request: Request, read) -> JSONResponse:
        """`read(settings, ticker, day, synthetic)` for the request's ticker and day, as JSON."""
        from pipelines.chart import NotATicker
        from pipelines.query import QueryFailed, StoreUnreachable

        ticker = request.query_params.get("ticker", "")
        try:
            day = date.fromisoformat(request.query_params.get("date", ""))
        except ValueError:
            return _problem("date: YYYY-MM-DD (New York)")
        synthetic = request.query_params.get("synthetic") in ("1", "true", "on")
        try:
            found = await run_in_threadpool(read, settings, ticker, day, synthetic)
        except NotATicker as exc:
            return _problem(str(exc))
        except (StoreUnreachable, QueryFailed) as exc:
            return _problem(str(exc), 503)
        return JSONResponse({"ticker": ticker, "date": day.isoformat(), "synthetic": synthetic, **found,
                             "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    async def bars(request: Request) -> JSONResponse:
        return await _ticker_day(request, lambda *args: {"bars": data.bars(*args)})

    async def news(request: Request) -> JSONResponse:
        return await _ticker_day(request, data.news_and_sentiment)

    async def tables(request: Request) -> JSONResponse:
        try:
            return JSONResponse({"tables": await run_in_threadpool(data.tables, settings), "error": None})
        except Exception as exc:  # noqa: BLE001 - the store down: one line naming the setting
            from pipelines.status import one_line

            return _problem(f"cannot read the object store at {settings.s3_endpoint_url} (S3_ENDPOINT_URL): "
                            f"{one_line(exc)}", 503)

    async def dead_letters(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(data.dead_letters, settings))

    async def original(request: Request) -> Response:
        uri = request.query_params.get("uri", "")
        try:
            body = await run_in_threadpool(data.dead_letter_original, settings, uri)
        except data.NotAnOriginal as exc:
            return _problem(str(exc), 404)
        name = "-".join(uri.split("/")[-3:])
        return Response(body, media_type="application/octet-stream",  # never rendered: downloaded as bytes
                        headers={"content-disposition": f'attachment; filename="dead-letter-{name}.bin"'})

    async def _query(request: Request) -> str | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        query = body.get("query") if isinstance(body, dict) else None
        return query if isinstance(query, str) and query.strip() else None

    async def _answer(request: Request):
        """The answer to the request's query, or the problem to send back instead."""
        query = await _query(request)
        if query is None:
            return _problem('send {"query": "SELECT ..."}')
        try:
            return await run_in_threadpool(data.sql, settings, query)
        except data.SqlRefused as exc:
            return _problem(str(exc))

    async def sql(request: Request) -> JSONResponse:
        answer = await _answer(request)
        if isinstance(answer, Response):
            return answer
        return JSONResponse({"columns": answer.columns, "rows": answer.rows, "cut": answer.cut,
                             "seconds": answer.seconds, "limit": data.SQL_ROWS})

    async def sql_csv(request: Request) -> Response:
        from pipelines.query_output import CsvFormat

        answer = await _answer(request)
        if isinstance(answer, Response):
            return answer
        out = io.BytesIO()
        if answer.table.num_columns:  # the same CSV as `marketstream sql --format csv`
            csv = CsvFormat(out)
            csv.begin(answer.table.schema)
            for batch in answer.table.to_batches():
                csv.write(batch)
            csv.end()
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="marketstream-query.csv"'})

    routes = [Route(path, page(name, title)) for path, (name, title) in PAGES.items()] + [
        Route("/api/overview", overview), Route("/api/bars", bars), Route("/api/news", news), Route("/api/tables", tables),
        Route("/api/dead-letters", dead_letters), Route("/api/dead-letter-original", original), Route("/api/sql", sql, methods=["POST"]),
        Route("/api/sql.csv", sql_csv, methods=["POST"]), Mount("/static", StaticFiles(directory=STATIC))]
    app = Starlette(routes=routes, lifespan=lifespan)
    token = settings.console_token.get_secret_value() if settings.console_token else None
    return Headers(TokenRequired(app, token))
