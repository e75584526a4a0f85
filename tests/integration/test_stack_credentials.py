"""`stack/stack.sh` takes its credentials from .env like the dataflows, applies a change on the next `up`,
and never puts a secret on a command line. Runs a second stack of its own on free ports."""

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from marketstream import preflight
from marketstream.settings import ConfigError
from tests.conftest import make_settings
from tests.integration.private_servers import free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def credentials(tag: str) -> dict[str, str]:
    return {"S3_ACCESS_KEY": f"stack-test-access-{tag}", "S3_SECRET_KEY": f"stack-test-secret-{tag}-8d1e",
            "POSTGRES_PASSWORD": f"stack-test-pg-{tag}-40c7"}


@pytest.fixture
def private_stack():
    # postgres runs as its own user: every folder above its data must be open to it
    root = Path(tempfile.mkdtemp(prefix="marketstream-stack-", dir="/tmp"))
    root.chmod(0o755)
    ports = {name: str(free_port()) for name in
             ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "MINIO_PORT", "MINIO_CONSOLE_PORT", "POSTGRES_PORT")}
    argv_log = root / "argv.log"
    wrappers = root / "bin"
    wrappers.mkdir()
    for command in ("runuser", "nohup"):  # every server and psql command the script runs passes through these
        wrapper = wrappers / command
        wrapper.write_text(f'#!/bin/sh\necho "$*" >> {argv_log}\nexec {shutil.which(command)} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("S3_", "POSTGRES_", "KAFKA_", "MINIO_"))}
    env.update({"STACK_DIR": str(root / "stack"), "ENV_FILE": str(root / ".env"), "PATH": f"{wrappers}:{env['PATH']}"})

    def up(tag: str) -> dict[str, str]:
        values = {**ports, **credentials(tag)}
        (root / ".env").write_text("".join(f"{name}={value}   # a comment\n" for name, value in values.items()))
        done = subprocess.run([REPO / "stack" / "stack.sh", "up"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"stack.sh up exited with {done.returncode}:\n{done.stderr[-4000:]}"
        return values

    yield up, argv_log
    subprocess.run([REPO / "stack" / "stack.sh", "down"], env=env, capture_output=True, timeout=120)
    shutil.rmtree(root, ignore_errors=True)


def settings_for(values: dict[str, str]):
    return make_settings(s3_endpoint_url=f"http://127.0.0.1:{values['MINIO_PORT']}", s3_access_key=values["S3_ACCESS_KEY"],
                         s3_secret_key=values["S3_SECRET_KEY"], postgres_port=int(values["POSTGRES_PORT"]),
                         postgres_password=values["POSTGRES_PASSWORD"])


def test_the_stack_takes_credentials_from_env_and_applies_a_change_on_the_next_up(private_stack):
    up, argv_log = private_stack
    first = up("one")
    preflight.wait_for(settings_for(first), ("s3", "postgres"))

    second = up("two")
    preflight.wait_for(settings_for(second), ("s3", "postgres"))
    for need in ("s3", "postgres"):
        with pytest.raises(ConfigError):
            preflight.wait_for(settings_for(first), (need,))

    commands = argv_log.read_text()
    assert "psql" in commands and "minio" in commands  # the wrappers saw the commands
    for values in (first, second):
        for name in ("S3_SECRET_KEY", "POSTGRES_PASSWORD"):
            assert values[name] not in commands, f"{name} on a command line"
