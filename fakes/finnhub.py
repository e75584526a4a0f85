"""A local server speaking Finnhub's REST API (`/api/v1/company-news`) as finnhub-python calls it."""

from __future__ import annotations

from datetime import datetime, timezone

from fakes.http import FakeHTTPServer, Reply


class FakeFinnhub(FakeHTTPServer):
    def __init__(self, token: str = "finnhub-test-token"):
        super().__init__()
        self.token = token
        self.articles: dict[str, list[dict]] = {}

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v1"

    def publish(self, symbol: str, article_id: int, at: datetime, headline: str = "Headline", **fields) -> dict:
        article = {"category": "company", "datetime": int(at.timestamp()), "headline": headline, "id": article_id,
                   "image": "", "related": symbol, "source": "Fake Wire", "summary": f"About {symbol}",
                   "url": f"https://news.example/{article_id}", **fields}
        self.articles.setdefault(symbol, []).append(article)
        return article

    def route(self, method, path, query, headers, body) -> Reply:
        if query.get("token") != self.token:
            return Reply(401, {"error": "Invalid API key"})
        if path != "/api/v1/company-news":
            return Reply(404, {"error": "Not found"})
        since, until = query["from"], query["to"]
        found = [a for a in self.articles.get(query["symbol"], [])
                 if isinstance(a.get("datetime"), int)
                 and since <= datetime.fromtimestamp(a["datetime"], tz=timezone.utc).date().isoformat() <= until
                 or not isinstance(a.get("datetime"), int)]
        return Reply(200, sorted(found, key=lambda a: str(a.get("datetime")), reverse=True))
