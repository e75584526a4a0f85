"""A tiny threaded HTTP server for the fake APIs: subclasses answer `route()`, tests script faults: any reply
(a 429, a 5xx), an answer that comes late (`delay`), or none at all (`drop`: the connection is closed)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Reply:
    def __init__(self, status: int = 200, body: bytes | str | dict | list = b"", headers: dict | None = None,
                 content_type: str | None = None, *, delay: float = 0.0, drop: bool = False):
        """`delay`: seconds before answering; `drop`: close the connection instead of answering."""
        if isinstance(body, (dict, list)):
            body, content_type = json.dumps(body).encode(), content_type or "application/json"
        elif isinstance(body, str):
            body = body.encode()
        self.status, self.body = status, body
        self.headers = {"Content-Type": content_type or "application/octet-stream", **(headers or {})}
        self.delay, self.drop = delay, drop


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up on a late answer
            super().handle_error(request, client_address)


class FakeHTTPServer:
    def __init__(self):
        self.requests: list[tuple[str, str, dict]] = []
        self.faults: deque[Reply] = deque()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = "/" + parts.path.lstrip("/").replace("//", "/")
                fake.requests.append((self.command, path, query))
                reply = fake.faults.popleft() if fake.faults else fake.route(self.command, path, query, self.headers, body)
                time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, method: str, path: str, query: dict, headers, body: bytes) -> Reply:
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
