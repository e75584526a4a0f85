"""An outage is two log lines, whatever the number of failed attempts and of threads making them; what
is not an outage is not waited out."""

import logging
import threading
from datetime import date

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pytest

from marketstream.outages import Backoff, Outage, outage, retry


def test_an_outage_is_one_warning_when_it_starts_and_one_when_the_server_answers_again(caplog):
    now = [100.0]
    store = Outage("object store", clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="marketstream.outages"):
        store.answered()  # no outage: nothing said
        for attempt in range(5):
            store.failed("writing s3://b/k", ConnectionResetError("Connection reset by peer"))
            now[0] += 2
        assert store.failing
        store.answered()
        store.answered()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "object store failing: writing s3://b/k failed (ConnectionResetError: Connection reset by peer); retrying "
        "until it answers, one line when it does",
        "object store answers again after 10.0 s of outage (5 failed attempts)"]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 4
    assert not store.failing


def test_a_second_outage_is_reported_again_and_threads_failing_together_report_one(caplog):
    store = Outage("kafka")
    with caplog.at_level(logging.WARNING, logger="marketstream.outages"):
        threads = [threading.Thread(target=store.failed, args=("polling", "timed out")) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        store.answered()
        store.failed("polling", "timed out")
        store.answered()
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" ", 2)[1] for line in lines] == ["failing:", "answers", "failing:", "answers"]
    assert "(8 failed attempts)" in lines[1] and "(1 failed attempts)" in lines[3]


def test_one_outage_per_name_in_a_process():
    assert outage("object store") is outage("object store") is not outage("kafka")


def test_a_failure_that_says_the_code_asked_wrongly_is_raised_at_once_not_waited_out():
    """Found when a date partition was filtered with a string: the read was retried as an outage forever."""
    slept = []
    backoff = Backoff("object store", "test", sleep=slept.append)

    def compare_a_date_with_text():
        return pa.compute.equal(pa.array([date(2026, 11, 24)]), pa.scalar("2026-11-24"))

    with pytest.raises(pa.ArrowNotImplementedError):
        retry("reading", compare_a_date_with_text, backoff)
    attempts = iter([OSError("connection reset"), None])

    def flaky():
        error = next(attempts)
        if error:
            raise error
        return "read"

    assert retry("reading", flaky, backoff) == "read" and slept == [0.5]
