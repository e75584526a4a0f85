"""A local server speaking FRED's `series/observations` API in the XML that fredapi reads."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from fakes.http import FakeHTTPServer, Reply

BAD_KEY = ("Bad Request.  The value for variable api_key is not registered.  Read "
           "https://fred.stlouisfed.org/docs/api/api_key.html for more information.")


def error_xml(code: int, message: str) -> str:
    return f'<?xml version="1.0" encoding="utf-8" ?>\n<error code="{code}" message={quoteattr(message)}/>'


class FakeFred(FakeHTTPServer):
    def __init__(self, api_key: str = "fred-test-key"):
        super().__init__()
        self.api_key = api_key
        # series id -> list of (date, realtime_start, realtime_end, value) vintages
        self.vintages: dict[str, list[tuple[str, str, str, str]]] = {}

    @property
    def root_url(self) -> str:
        return f"{self.url}/fred"

    def add(self, series_id: str, observed: str, value: str, realtime_start: str, realtime_end: str = "9999-12-31"):
        self.vintages.setdefault(series_id, []).append((observed, realtime_start, realtime_end, value))

    def revise(self, series_id: str, observed: str, value: str, on: str) -> None:
        """A new vintage from `on`: the previous one for that date ends the day before."""
        rows = self.vintages[series_id]
        for i, (d, start, end, v) in enumerate(rows):
            if d == observed and end == "9999-12-31":
                rows[i] = (d, start, on, v)
        rows.append((observed, on, "9999-12-31", value))

    def route(self, method, path, query, headers, body) -> Reply:
        if path != "/fred/series/observations":
            return Reply(404, error_xml(404, "Not Found"), content_type="text/xml")
        if query.get("api_key") != self.api_key:
            return Reply(400, error_xml(400, BAD_KEY), content_type="text/xml")
        series = query.get("series_id", "")
        if series not in self.vintages:
            return Reply(400, error_xml(400, "Bad Request.  The series does not exist."), content_type="text/xml")
        window_start = query.get("realtime_start", "1776-07-04")
        rows = sorted(r for r in self.vintages[series] if r[2] >= window_start)
        lines = "\n".join(
            f'  <observation realtime_start="{max(start, window_start)}" realtime_end="{end}" date="{d}" value="{v}"/>'
            for d, start, end, v in rows
        )
        xml = (f'<?xml version="1.0" encoding="utf-8" ?>\n<observations realtime_start="{window_start}" '
               f'realtime_end="9999-12-31" count="{len(rows)}" offset="0" limit="100000">\n{lines}\n</observations>')
        return Reply(200, xml, content_type="text/xml; charset=UTF-8")
