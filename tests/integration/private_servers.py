"""Short-lived private MinIO and Kafka servers for tests that stop and restart them mid-run, so the
shared stack is never disturbed. Both use the binaries `make stack` installed."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port nothing listens on: from `TEST_PORTS` (e.g. `29300-29499`) when set, so that tests sharing a
    machine with other stacks keep to the ports given them, else one the system picks."""
    first, _, last = os.environ.get("TEST_PORTS", "").partition("-")
    candidates = range(int(first), int(last or first) + 1) if first else [0]
    for _ in range(2):  # once every port of the range was handed out, those nothing listens on again are free
        for candidate in candidates:
            if candidate in _HANDED_OUT:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
                port = sock.getsockname()[1]
                _HANDED_OUT.add(port)
                return port
        _HANDED_OUT.clear()
    raise RuntimeError(f"no free port in TEST_PORTS={os.environ['TEST_PORTS']}")


_HANDED_OUT: set[int] = set()
"""Ports `free_port` gave from TEST_PORTS this session: a server handed one may not listen yet."""


def _stack(command: str) -> str:
    return subprocess.run([REPO / "stack" / "stack.sh", command], capture_output=True, text=True, check=True).stdout.strip()


def _wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing answered on port {port}")


class _PrivateServer:
    """A server process of a test's own; `stop` waits up to `stop_seconds` for it to exit."""

    stop_seconds = 30
    process: subprocess.Popen | None = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(self.stop_seconds)
            self.process = None

    def start(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        """Started for the `with` block, stopped after it."""
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class PrivateMinio(_PrivateServer):
    user, password = "private", "private-secret"

    def __init__(self, data: Path):
        self.data, self.port = data, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def settings(self) -> dict:
        return {"s3_endpoint_url": f"http://127.0.0.1:{self.port}", "s3_access_key": self.user,
                "s3_secret_key": self.password}

    def start(self) -> None:
        env = {**os.environ, "MINIO_ROOT_USER": self.user, "MINIO_ROOT_PASSWORD": self.password, "MINIO_BROWSER": "off"}
        self.process = subprocess.Popen([_stack("minio-path"), "server", str(self.data), "--address",
                                         f"127.0.0.1:{self.port}"], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        _wait_for_port(self.port)


class PrivateKafka(_PrivateServer):
    stop_seconds = 60

    def __init__(self, data: Path, advertised_port: int | None = None):
        """`advertised_port`: the port the broker tells clients to reach it on (default its own), e.g. a
        fault proxy's in front of it, so that every client connection goes through the proxy."""
        self.data, self.port, self.controller = data, free_port(), free_port()
        self.process: subprocess.Popen | None = None
        self.properties = data / "server.properties"
        data.mkdir(parents=True, exist_ok=True)
        self.properties.write_text(
            "process.roles=broker,controller\nnode.id=1\n"
            f"controller.quorum.voters=1@127.0.0.1:{self.controller}\n"
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{advertised_port or self.port}\n"
            "controller.listener.names=CONTROLLER\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
            f"log.dirs={data / 'logs'}\noffsets.topic.replication.factor=1\n"
            "transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n"
            "group.initial.rebalance.delay.ms=0\nauto.create.topics.enable=false\n")
        self._java = ["java", "-Xmx512m", f"-Dlog4j2.configurationFile={REPO / 'stack' / 'log4j2.properties'}",
                      "-cp", _stack("kafka-classpath")]
        subprocess.run([*self._java, "kafka.tools.StorageTool", "format", "-t", "MkU3OEVBNTcwNTJENDM2Qg",
                        "-c", str(self.properties)], check=True, capture_output=True)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen([*self._java, "kafka.Kafka", str(self.properties)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port)
