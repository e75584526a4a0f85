"""Who may use the console.

- It listens on loopback unless told otherwise; any other address needs `CONSOLE_TOKEN`, and without it the
  console refuses to start (`check_bind`, one line naming the setting).
- When a token is set, every request must carry it, whatever the address: `Authorization: Bearer <token>`,
  or the cookie a browser gets by opening any page once with `?token=<token>` (HttpOnly, SameSite=Strict;
  the token is then taken out of the address). Tokens are compared in constant time. A request without it
  gets 401 and nothing else, static files included.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlencode

from marketstream.settings import ConfigError

COOKIE = "marketstream_console"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Raise ConfigError when `host` is off loopback and no token is set."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"--host {host} is not a loopback address: set CONSOLE_TOKEN (a long random secret "
                          "every request must carry) to serve the console there")


def _given(scope, headers: dict[bytes, bytes], query: dict[str, str]) -> tuple[str | None, bool]:
    """The token a request carries, and whether it came in the address."""
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip(), False
    if "token" in query:
        return query["token"], True
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value, False
    return None, False


class TokenRequired:
    """ASGI middleware: with `token` set, every HTTP request must carry it (see the module docstring)."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.token:
            return await self.app(scope, receive, send)
        from urllib.parse import parse_qsl

        headers = dict(scope.get("headers") or [])
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        given, in_address = _given(scope, headers, query)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            body = b"401: this console needs its token (CONSOLE_TOKEN): open it once with ?token=...\n"
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"www-authenticate", b"Bearer")]})
            return await send({"type": "http.response.body", "body": body})
        if in_address:  # the browser keeps it in a cookie; the address shown loses it
            rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
            location = scope["path"] + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode()),
                                    (b"content-length", b"0")]})
            return await send({"type": "http.response.body", "body": b""})
        return await self.app(scope, receive, send)
