"""A small client for Toxiproxy's HTTP API (documented in its README, unchanged since 2.0): proxies in front
of a server, and toxics (latency, bandwidth limits, connection resets, timeouts) added to and removed from
them while data flows. The server is the one `stack/toxiproxy.sh` builds from its Go module.

PyPI's `toxiproxy-python` was last released in 2019 and needs the `future` package, so this speaks the API
with the standard library."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass


class ToxiproxyError(RuntimeError):
    pass


@dataclass
class Proxy:
    """One proxy: clients connect to `listen` (127.0.0.1:port), Toxiproxy connects on to `upstream`."""

    server: "ToxiproxyAPI"
    name: str
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, name: str, kind: str, stream: str = "downstream", toxicity: float = 1.0, **attributes) -> None:
        """Add toxic `name` of `kind` (latency: latency, jitter ms; bandwidth: rate KB/s; reset_peer:
        timeout ms; timeout: timeout ms, 0 = hold until removed; slow_close, slicer, limit_data) on
        `stream` (downstream: server to client; upstream: client to server)."""
        self.server.call("POST", f"/proxies/{self.name}/toxics", {
            "name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes})

    def remove(self, name: str) -> None:
        self.server.call("DELETE", f"/proxies/{self.name}/toxics/{name}")

    def point_to(self, upstream: str) -> None:
        """Forward new connections to `upstream` from now on (Toxiproxy closes the open ones), as a load
        balancer does when its health check takes a server out of rotation; the toxics stay."""
        self.server.call("POST", f"/proxies/{self.name}", {"upstream": upstream})

    def toxics(self) -> list[str]:
        return [toxic["name"] for toxic in self.server.call("GET", f"/proxies/{self.name}/toxics")]

    def set_enabled(self, enabled: bool) -> None:
        """Disabled, the proxy closes every connection and refuses new ones (a server gone)."""
        self.server.call("POST", f"/proxies/{self.name}", {"enabled": enabled})


def wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ToxiproxyError(f"nothing listens on 127.0.0.1:{port} after {seconds:g} s") from None
            time.sleep(0.1)


class ToxiproxyAPI:
    """The API of a toxiproxy-server listening on 127.0.0.1:`port`."""

    def __init__(self, port: int):
        self.port = port

    def call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise ToxiproxyError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from None
        return json.loads(text) if text.strip() else None

    def version(self) -> str:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/version")
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode().strip()

    def proxy(self, name: str, upstream: str, port: int) -> Proxy:
        """A new proxy `name` listening on 127.0.0.1:`port` in front of `upstream` (one left by an earlier
        run under that name is replaced)."""
        try:
            self.call("DELETE", f"/proxies/{name}")
        except ToxiproxyError:
            pass
        self.call("POST", "/proxies", {"name": name, "listen": f"127.0.0.1:{port}", "upstream": upstream,
                                       "enabled": True})
        wait_for_port(port)
        return Proxy(self, name, port)

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self.call("POST", "/reset")
