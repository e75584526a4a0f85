"""The cluster profile of the stack, as the tests here reach it: `make test-cluster` starts it
(`STACK_PROFILE=cluster stack/stack.sh up`) from `.env.example` + `.env.cluster.example` and names that file
in CLUSTER_ENV_FILE. The dataflows are given the same file's values as environment variables, and nothing
else: between the profiles only `.env` differs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values

from marketstream.settings import Settings, load_settings
from tests.integration.processes import kill_leftovers

REPO = Path(__file__).resolve().parents[2]
STACK_DIR = Path(os.environ.get("STACK_DIR") or REPO / ".stack-cluster")
CA = STACK_DIR / "tls" / "ca.crt"


def _cluster_env() -> dict[str, str]:
    named = os.environ.get("CLUSTER_ENV_FILE")
    files = [Path(named)] if named else [REPO / ".env.example", REPO / ".env.cluster.example"]
    values: dict[str, str] = {}
    for file in files:
        values.update({name: value or "" for name, value in dotenv_values(file).items()})
    # the CA is where this stack made it, whatever the directory the tests run from
    for name in ("KAFKA_SSL_CA_LOCATION", "S3_CA_BUNDLE", "POSTGRES_SSLROOTCERT"):
        values[name] = str(CA)
    values["RECOVERY_DIRECTORY"] = ""
    return values


CLUSTER_ENV = _cluster_env()
"""The cluster profile's `.env`, as the environment of the dataflows the tests start."""

SCRUBBED = {name: value for name, value in os.environ.items()
            if not name.startswith(("S3_", "POSTGRES_", "KAFKA_", "API_", "STOCK_", "BATCH_", "LAKE_"))}


def cluster_process_env(**changes: str) -> dict[str, str]:
    """The environment of a dataflow run on the cluster profile, with `changes` (NAME=value; "" unsets)."""
    env = {**SCRUBBED, **CLUSTER_ENV, **changes}
    return {name: value for name, value in env.items() if value != ""}


def cluster_settings(**overrides) -> Settings:
    """Settings as a dataflow reads them from the cluster profile's `.env`."""
    fields = {name.lower(): value for name, value in CLUSTER_ENV.items()
              if name.lower() in Settings.model_fields and value != ""}
    return load_settings(_env_file=None, **{**fields, **overrides})


def stack(*command: str) -> subprocess.CompletedProcess:
    """`stack/stack.sh COMMAND...` on the cluster profile (up starts whatever is not running and waits for it;
    start NAME starts that one server and waits for it alone)."""
    env = {**os.environ, "STACK_DIR": str(STACK_DIR)}
    if os.environ.get("CLUSTER_ENV_FILE"):
        env["ENV_FILE"] = os.environ["CLUSTER_ENV_FILE"]
    else:
        env.update({name: value for name, value in CLUSTER_ENV.items()
                    if name in ("STACK_PROFILE", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "MINIO_PORT",
                                "MINIO_CONSOLE_PORT", "POSTGRES_PORT", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")})
    return subprocess.run([str(REPO / "stack" / "stack.sh"), *command], env=env, capture_output=True, text=True,
                          timeout=300, check=True)


def server_pid(name: str) -> int:
    """The pid of a server of the cluster profile: kafka-1..3, minio-1..4, postgres."""
    return int((STACK_DIR / "pids" / f"{name}.pid").read_text().split()[0])


def server_alive(name: str) -> bool:
    try:
        os.kill(server_pid(name), 0)
        return True
    except (OSError, ValueError):
        return False


def kill_server(name: str) -> None:
    pid = server_pid(name)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} (pid {pid}) survived SIGKILL")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/cluster/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def cluster_running():
    """Fails (not skips) when the cluster profile is down: `make test-cluster` starts it. A test that killed
    a server leaves it restarted (`up` again) for the next one."""
    if not CA.exists():
        pytest.fail(f"no cluster profile under {STACK_DIR}: run `make test-cluster`")
    stack("up")
    yield


@pytest.fixture(autouse=True)
def servers_back_up():
    """Whatever a test killed is started again after it."""
    yield
    kill_leftovers()
    stack("up")
