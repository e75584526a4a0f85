"""Who may use the console (`pipelines.console.access`): loopback without a token, elsewhere only with one,
and with a token set every request carries it. The browser proof is tests/integration/test_console.py."""

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from marketstream.settings import ConfigError
from pipelines.console.access import COOKIE, TokenRequired, check_bind, is_loopback

TOKEN = "a-long-random-console-token"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(host):
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "console.example"])
def test_any_other_address_needs_the_token_and_the_refusal_names_it(host):
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="CONSOLE_TOKEN"):
        check_bind(host, None)
    with pytest.raises(ConfigError, match="CONSOLE_TOKEN"):
        check_bind(host, "")
    check_bind(host, TOKEN)


def client(token):
    async def hello(request):
        return PlainTextResponse(f"hello {request.url.path} {request.url.query}")

    app = Starlette(routes=[Route("/", hello), Route("/ticker", hello)])
    return TestClient(TokenRequired(app, token), follow_redirects=False)


def test_with_a_token_every_request_carries_it():
    browser = client(TOKEN)
    assert browser.get("/").status_code == 401
    assert browser.get("/", headers={"authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert browser.get("/", headers={"authorization": "Bearer "}).status_code == 401
    assert browser.get("/?token=").status_code == 401
    assert browser.get("/", headers={"authorization": f"Bearer {TOKEN}"}).text == "hello / "
    assert browser.get("/", cookies={COOKIE: "wrong"}).status_code == 401


def test_the_token_in_the_address_becomes_a_strict_cookie_and_leaves_the_address():
    browser = client(TOKEN)
    answer = browser.get(f"/ticker?ticker=AAPL&token={TOKEN}&date=2026-11-24")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ticker?ticker=AAPL&date=2026-11-24"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    browser.cookies.set(COOKIE, TOKEN)
    assert browser.get("/ticker?ticker=AAPL").text == "hello /ticker ticker=AAPL"


def test_without_a_token_nothing_is_asked():
    assert client(None).get("/").text == "hello / "
