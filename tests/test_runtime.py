"""Start-up and logging around every dataflow: waiting for servers, redaction, repeated lines held back."""

import logging

import pytest

from marketstream import preflight
from pipelines import runtime
from pipelines.runtime import RedactingFormatter, RepeatFilter
from marketstream.settings import ConfigError
from tests.conftest import make_settings


def record(text: str, name: str = "librdkafka", level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, text, None, None)


def test_a_repeated_warning_passes_once_per_interval_and_then_says_how_many_were_held_back():
    now = [0.0]
    repeats = RepeatFilter(interval=30, clock=lambda: now[0])
    passed = []
    for second in range(61):  # the same failure twice a second, with a changing number in it
        now[0] = float(second)
        for attempt in range(2):
            line = record(f"127.0.0.1:9092/bootstrap: Connect failed (after {second * 2 + attempt}ms in state CONNECT)")
            if repeats.filter(line):
                passed.append(line.getMessage())
    assert len(passed) == 3
    assert passed[1].endswith("(59 more like it in the last 30 s)")
    assert repeats.filter(record("another failure"))
    assert all(repeats.filter(record("progress", level=logging.INFO)) for _ in range(5))


def test_redaction_leaves_logger_names_alone_and_masks_the_message():
    formatter = RedactingFormatter(["marketstream"], "%(name)s: %(message)s")
    line = logging.LogRecord("marketstream.kafka_cluster", logging.INFO, __file__, 1, "password=%s", ("marketstream",), None)
    assert formatter.format(line) == "marketstream.kafka_cluster: password=***"


def test_redaction_reaches_tracebacks():
    formatter = RedactingFormatter(["s3cr3t-value"], "%(message)s")
    try:
        raise RuntimeError("token s3cr3t-value rejected")
    except RuntimeError:
        import sys

        line = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    text = formatter.format(line)
    assert "s3cr3t-value" not in text and "token *** rejected" in text


def test_an_unreachable_server_is_waited_for_saying_once_per_try_what_and_which_setting(monkeypatch, caplog):
    answers = [preflight.Unreachable("Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP_SERVERS): refused")] * 3 + [None]

    def check(settings):
        answer = answers.pop(0)
        if answer:
            raise answer

    monkeypatch.setitem(preflight.CHECKS, "kafka", check)
    waits = []
    with caplog.at_level(logging.WARNING, logger="marketstream.preflight"):
        preflight.wait_for(make_settings(), ("kafka",), sleep=lambda seconds: waits.append(seconds) and False)
    assert waits == [1.0, 2.0, 4.0]
    assert [r.getMessage() for r in caplog.records] == [
        f"waiting for Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP_SERVERS): refused; next try in {w:.0f} s" for w in waits]


def test_a_shutdown_while_waiting_stops_with_one_line(monkeypatch):
    def down(settings):
        raise preflight.Unreachable("the object store at http://127.0.0.1:1 (S3_ENDPOINT_URL): refused")

    monkeypatch.setitem(preflight.CHECKS, "s3", down)
    with pytest.raises(SystemExit, match="stopped while waiting for s3"):
        preflight.wait_for(make_settings(), ("s3",), sleep=lambda seconds: True)


def test_refused_credentials_are_not_waited_for(monkeypatch):
    def refuses(settings):
        raise ConfigError("the object store refused the credentials: check S3_ACCESS_KEY / S3_SECRET_KEY")

    monkeypatch.setitem(preflight.CHECKS, "s3", refuses)
    with pytest.raises(ConfigError, match="S3_SECRET_KEY"):
        preflight.wait_for(make_settings(), ("s3",), sleep=lambda seconds: pytest.fail("waited"))


def test_the_demo_keeps_its_recovery_state_with_the_stack_data():
    from pathlib import Path

    from pipelines.cli import REPO, demo_recovery_directory

    assert demo_recovery_directory({"STACK_DIR": "/srv/stack"}) == Path("/srv/stack/recovery/stock_consume")
    assert demo_recovery_directory({}) == REPO / ".stack" / "recovery" / "stock_consume"


def test_metrics_listen_on_loopback_only_by_default():
    import socket

    from pipelines.runtime import serve_metrics
    from tests.integration.private_servers import free_port

    settings = make_settings(metrics_port=free_port())
    port = serve_metrics("test_flow", settings.metrics_port, settings.metrics_address)
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    with pytest.raises(ConnectionRefusedError):  # another loopback address: a server on 0.0.0.0 would answer it
        socket.create_connection(("127.0.0.2", port), timeout=2)


def test_what_is_alive_once_the_flow_is_built_and_its_servers_answer_is_left_out_of_collections(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "configure_logging", lambda settings: None)
    monkeypatch.setattr(runtime.shutdown, "install", lambda timeout: None)
    monkeypatch.setattr(runtime.sys, "argv", ["dataflows.stock_consume"])
    monkeypatch.setattr(runtime.preflight, "wait_for", lambda settings, needs: calls.append(("wait_for", needs)))
    monkeypatch.setattr(runtime, "exempt_startup_objects_from_collection", lambda: calls.append(("exempt",)))
    flow = runtime.build_or_exit(lambda settings: calls.append(("build",)) or "the flow", ("kafka",),
                                 make_settings(metrics_port=None))
    assert flow == "the flow"
    assert calls == [("build",), ("wait_for", ("kafka",)), ("exempt",)]
