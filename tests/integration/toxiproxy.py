"""A Toxiproxy of a test's own (`chaos/toxiproxy.py` speaks its API), to put real network faults (latency,
bandwidth limits, connection resets, timeouts) between a dataflow and a server while data flows."""

from __future__ import annotations

import subprocess
from pathlib import Path

from chaos.toxiproxy import Proxy, ToxiproxyAPI, ToxiproxyError
from tests.integration.private_servers import _PrivateServer, _wait_for_port, free_port

__all__ = ["Proxy", "Toxiproxy", "ToxiproxyError", "toxiproxy_server_path"]

REPO = Path(__file__).resolve().parents[2]


def toxiproxy_server_path() -> str:
    """The cached toxiproxy-server binary, built on first use by `stack/toxiproxy.sh`."""
    return subprocess.run([REPO / "stack" / "toxiproxy.sh", "path"], capture_output=True, text=True,
                          check=True).stdout.strip()


class Toxiproxy(_PrivateServer, ToxiproxyAPI):
    """A toxiproxy-server of the test's own on 127.0.0.1 (its API port and every proxy port from
    `free_port`); `stop` ends it and with it every proxy."""

    stop_seconds = 10

    def __init__(self):
        ToxiproxyAPI.__init__(self, free_port())
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([toxiproxy_server_path(), "-host", "127.0.0.1", "-port", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port)

    def proxy(self, name: str, upstream: str, port: int | None = None) -> Proxy:
        """A new proxy `name` listening on 127.0.0.1:`port` (default: a free one) in front of `upstream`."""
        return ToxiproxyAPI.proxy(self, name, upstream, port or free_port())
