"""A Toxiproxy of a test's own and a small client for its HTTP API, to put real network faults (latency,
bandwidth limits, connection resets, timeouts) between a dataflow and a server while data flows.

The server is the one `stack/toxiproxy.sh` builds from its Go module and caches. PyPI's `toxiproxy-python`
was last released in 2019 and needs the `future` package, so this speaks the API (documented in
Toxiproxy's README, unchanged since 2.0) with the standard library."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.integration.private_servers import _PrivateServer, _wait_for_port, free_port

REPO = Path(__file__).resolve().parents[2]


def toxiproxy_server_path() -> str:
    """The cached toxiproxy-server binary, built on first use by `stack/toxiproxy.sh`."""
    return subprocess.run([REPO / "stack" / "toxiproxy.sh", "path"], capture_output=True, text=True,
                          check=True).stdout.strip()


class ToxiproxyError(RuntimeError):
    pass


@dataclass
class Proxy:
    """One proxy: clients connect to `listen` (127.0.0.1:port), Toxiproxy connects on to `upstream`."""

    server: "Toxiproxy"
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

    def toxics(self) -> list[str]:
        return [toxic["name"] for toxic in self.server.call("GET", f"/proxies/{self.name}/toxics")]

    def set_enabled(self, enabled: bool) -> None:
        """Disabled, the proxy closes every connection and refuses new ones (a server gone)."""
        self.server.call("POST", f"/proxies/{self.name}", {"enabled": enabled})


class Toxiproxy(_PrivateServer):
    """A toxiproxy-server of the test's own on 127.0.0.1 (its API port and every proxy port from
    `free_port`); `stop` ends it and with it every proxy."""

    stop_seconds = 10

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([toxiproxy_server_path(), "-host", "127.0.0.1", "-port", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port)

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

    def proxy(self, name: str, upstream: str, port: int | None = None) -> Proxy:
        """A new proxy `name` listening on 127.0.0.1:`port` (default: a free one) in front of `upstream`."""
        port = port or free_port()
        self.call("POST", "/proxies", {"name": name, "listen": f"127.0.0.1:{port}", "upstream": upstream,
                                       "enabled": True})
        _wait_for_port(port)
        return Proxy(self, name, port)

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self.call("POST", "/reset")
