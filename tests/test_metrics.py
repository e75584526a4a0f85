"""The metrics' labels stay bounded, and the parts that count without a server count what they did."""

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from prometheus_client import REGISTRY

from marketstream.batching import BufferBudget, TableBatcher
from marketstream.metrics import reason_kind
from sources.polling import PermanentError, PollingSource, TransientError


@pytest.mark.parametrize("reason, kind", [
    ("field 'price' must be finite and > 0, got -1.0", "field price"),
    ("field 'symbol' is not a valid ticker: 'AA PL'", "field symbol"),
    ("not valid JSON: unexpected character: line 1 column 3 (char 2)", "not valid JSON"),
    ("duplicate key 'price' in a JSON object", "duplicate key in a JSON object"),
    ("expected a JSON object, got list", "expected a JSON object, got list"),
    ("message of 1048577 bytes over the broker's limit", "message of bytes over the broker's limit"),
    ("'''", "other"),
])
def test_a_reason_becomes_a_kind_without_its_values(reason, kind):
    assert reason_kind(reason) == kind


def test_each_flush_reports_its_rows_and_the_age_of_its_first_row():
    clock = [datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)]
    flushed = []
    batcher = TableBatcher(timedelta(seconds=10), BufferBudget(1_000), now=lambda: clock[0],
                           on_flush=lambda rows, age: flushed.append((rows, age)))
    batcher.on_batch([pa.table({"x": [1, 2]})])
    clock[0] += timedelta(seconds=4)
    batcher.on_batch([pa.table({"x": [3]})])
    clock[0] += timedelta(seconds=7)
    batcher.on_notify()
    batcher.on_eof()  # nothing held: no flush to report
    assert flushed == [(3, timedelta(seconds=11))]


class _Poller:
    def __init__(self, outcomes):
        self._outcomes = list(outcomes)

    def initial_state(self):
        return None

    def poll(self, state, now):
        outcome = self._outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome, now

    def close(self):
        pass


def _value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_api_polls_are_counted_by_outcome_and_rate_limit_waits_with_their_seconds():
    source = "metrics_test_in"
    before = {o: _value("marketstream_api_calls_total", source=source, outcome=o) for o in ("ok", "retried", "refused")}
    waits = _value("marketstream_rate_limit_waits_total", source=source)
    waited = _value("marketstream_rate_limit_wait_seconds_total", source=source)
    clock = [datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)]
    poller = _Poller([[1], TransientError("429", retry_after=30), TransientError("timeout"), [2],
                      PermanentError("bad key")])
    part = PollingSource(["x"], lambda name: poller, now=lambda: clock[0]).build_part(source, "x", None)
    for _ in range(4):
        part.next_batch()
        clock[0] += timedelta(minutes=10)
    with pytest.raises(RuntimeError):
        part.next_batch()
    after = {o: _value("marketstream_api_calls_total", source=source, outcome=o) for o in ("ok", "retried", "refused")}
    assert {o: after[o] - before[o] for o in after} == {"ok": 2, "retried": 2, "refused": 1}
    assert _value("marketstream_rate_limit_waits_total", source=source) - waits == 1
    assert _value("marketstream_rate_limit_wait_seconds_total", source=source) - waited == 30
