"""The history sources' one pacer and retrier: its rules for any sequence of answers (generated), then each
failure mode of the real clients (alpaca-py, finnhub-python) against the local fakes of their APIs."""

import logging
from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from sources.alpaca_history import AlpacaTradeHistory
from sources.finnhub_news import FinnhubNews, FinnhubNewsHistory
from sources.pacing import MAX_BACKOFF_SECONDS, GaveUp, Pacer, PermanentError, Refused, TransientError
from fakes.alpaca_rest import FakeAlpacaHistory
from fakes.finnhub import FakeFinnhub
from fakes.http import Reply
from tests.sources.clock import InstantClock

UTC = timezone.utc
OPEN, HOUR_LATER = datetime(2026, 11, 20, 14, 30, tzinfo=UTC), datetime(2026, 11, 20, 15, 30, tzinfo=UTC)

answers = st.one_of(st.just("ok"), st.just("refused"),
                    st.tuples(st.just("busy"), st.none() | st.floats(0, 200, allow_nan=False)))


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@settings(max_examples=300, deadline=None)
@given(script=st.lists(answers, min_size=1, max_size=40), per_minute=st.floats(0.5, 1000),
       patience=st.floats(1, 900), duration=st.floats(0, 5))
def test_requests_are_spaced_waits_are_those_asked_for_and_a_request_gives_up_only_past_the_patience(
        script, per_minute, patience, duration):
    clock, requests, outcomes = InstantClock(), [], []
    pending = iter(script)

    def request():
        answer = next(pending)
        requests.append((len(outcomes), clock.now, answer))  # (call, start, answer)
        clock.now += duration
        if answer == "ok":
            return "page"
        if answer == "refused":
            raise PermanentError("refused")
        raise TransientError("busy", answer[1])

    pacer = Pacer("test", "the API at http://x (API_URL)", per_minute, patience_seconds=patience, clock=clock)
    warnings = Warnings()
    logging.getLogger("sources.pacing").addHandler(warnings)
    try:
        while len(requests) < len(script):
            try:
                outcomes.append(pacer.call("a page", request))
            except (GaveUp, Refused) as exc:
                outcomes.append(exc)
                assert "the API at http://x (API_URL)" in str(exc)
            except StopIteration:  # the script ended during a call's retries
                outcomes.append(None)
    finally:
        logging.getLogger("sources.pacing").removeHandler(warnings)

    starts = [start for _, start, _ in requests]
    assert all(later - earlier >= 60 / per_minute - 1e-6 for earlier, later in zip(starts, starts[1:]))
    retries = 0
    for call, outcome in enumerate(outcomes):
        tries = [(start, answer) for c, start, answer in requests if c == call]
        first_failure = tries[0][0]
        for attempt, (start, answer) in enumerate(tries, start=1):
            last = attempt == len(tries)
            if answer == "ok":
                assert last and outcome == "page"
            elif answer == "refused":
                assert last and isinstance(outcome, Refused), "a refusal is never retried"
            else:
                wait = answer[1] if answer[1] is not None else min(2.0 ** attempt, MAX_BACKOFF_SECONDS)
                failing_for = start + duration - first_failure
                if last and isinstance(outcome, GaveUp):
                    assert failing_for + wait > patience
                elif not last or outcome is None:
                    assert failing_for + wait <= patience, "it retried past its patience"
                    if not last:
                        retries += 1
                        assert tries[attempt][0] - (start + duration) >= wait - 1e-6, "it retried too early"
    assert len(warnings.lines) == retries + sum(1 for o in outcomes if o is None), "one warning per retry"


def alpaca(fake, clock, **overrides) -> AlpacaTradeHistory:
    options = {"url_override": fake.url, "requests_per_minute": 120, "patience_seconds": 300, "clock": clock,
               **overrides}
    return AlpacaTradeHistory(options.pop("key", fake.key), fake.secret, **options)


def test_alpaca_429_5xx_a_dropped_connection_and_a_late_answer_are_waited_out_each_with_a_warning(caplog):
    clock = InstantClock()
    with FakeAlpacaHistory() as fake:
        fake.add("AAPL", 1, datetime(2026, 11, 20, 14, 31, tzinfo=UTC))
        fake.faults.extend([Reply(429, {"message": "too many requests"}, headers={"Retry-After": "7"}),
                            Reply(503, {"message": "unavailable"}), Reply(drop=True), Reply(delay=1.5)])
        with caplog.at_level(logging.WARNING, logger="sources.pacing"):
            trades = list(alpaca(fake, clock, request_timeout_seconds=0.3).trades("AAPL", OPEN, HOUR_LATER))
    assert [t.trade_id for t in trades] == ["1"]
    assert clock.sleeps == [7.0, 4.0, 8.0, 16.0], "Retry-After, then 4, 8 and 16 s: the backoff of failures 2 to 4"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and all("(ALPACA_DATA_URL): GET /v2/stocks/trades of AAPL" in line for line in lines)
    assert ["HTTP 429" in lines[0], "HTTP 503" in lines[1], "closed the connection" in lines[2],
            "no answer in time" in lines[3]] == [True] * 4
    assert [line.rsplit("; ", 1)[1] for line in lines] == [
        "attempt 1, next in 7 s", "attempt 2, next in 4 s", "attempt 3, next in 8 s", "attempt 4, next in 16 s"]


def test_alpaca_requests_are_paced_to_the_configured_rate():
    clock = InstantClock()
    with FakeAlpacaHistory() as fake:
        history = alpaca(fake, clock, requests_per_minute=20)
        for hour in range(3):
            list(history.trades("AAPL", OPEN.replace(hour=14 + hour), HOUR_LATER.replace(hour=15 + hour)))
    assert len(fake.trade_requests()) == 3 and clock.sleeps == [3.0, 3.0]


def test_alpaca_that_keeps_failing_is_given_up_after_the_patience_naming_the_url_setting():
    clock = InstantClock()
    with FakeAlpacaHistory() as fake:
        fake.faults.extend([Reply(500, {"message": "internal"})] * 20)
        with pytest.raises(GaveUp) as failure:
            list(alpaca(fake, clock, patience_seconds=100).trades("AAPL", OPEN, HOUR_LATER))
    assert clock.sleeps == [2.0, 4.0, 8.0, 16.0, 32.0], "the next wait, 60 s, would pass the 100 s of patience"
    assert str(failure.value).startswith(f"Alpaca's market-data API at {fake.url} (ALPACA_DATA_URL) kept failing")
    assert "HTTP 500" in str(failure.value) and "\n" not in str(failure.value)


def test_alpaca_refusing_the_keys_stops_at_once_naming_them():
    clock = InstantClock()
    with FakeAlpacaHistory() as fake:
        with pytest.raises(Refused, match="HTTP 401 .*check API_KEY_ALPACA / API_SECRET_ALPACA"):
            list(alpaca(fake, clock, key="wrong").trades("AAPL", OPEN, HOUR_LATER))
    assert len(fake.requests) == 1 and clock.sleeps == []


def finnhub_history(fake, clock, token=None, patience=300) -> FinnhubNewsHistory:
    news = FinnhubNews(token or fake.token, fake.api_url, 60, 30, 0)
    return FinnhubNewsHistory(news, patience_seconds=patience, clock=clock)


def test_finnhub_history_waits_out_429_5xx_and_a_dropped_connection_at_its_pace(caplog):
    clock = InstantClock()
    with FakeFinnhub() as fake:
        fake.publish("AAPL", 1, datetime(2026, 11, 20, 15, 0, tzinfo=UTC))
        fake.faults.extend([Reply(429, {"error": "limit"}, headers={"Retry-After": "30"}), Reply(502, "bad gateway"),
                            Reply(drop=True)])
        history = finnhub_history(fake, clock)
        with caplog.at_level(logging.WARNING, logger="sources.pacing"):
            first = history.messages_for_day("AAPL", date(2026, 11, 20))
            second = history.messages_for_day("AAPL", date(2026, 11, 21))
    assert len(first) == 1 and second == []
    assert clock.sleeps == [30.0, 4.0, 8.0, 2.0], "Retry-After, backoff, backoff, then the pace of 30 calls a minute"
    assert len(caplog.records) == 3 and all("(FINNHUB_API_URL): company news of AAPL on 2026-11-20 failed"
                                            in r.getMessage() for r in caplog.records)
    assert all(fake.token not in r.getMessage() for r in caplog.records)


def test_finnhub_refusing_the_key_stops_at_once_naming_it():
    clock = InstantClock()
    with FakeFinnhub() as fake:
        with pytest.raises(Refused, match="Finnhub rejected FINNHUB_API_KEY"):
            finnhub_history(fake, clock, token="wrong-token").messages_for_day("AAPL", date(2026, 11, 20))
    assert len(fake.requests) == 1 and clock.sleeps == []
