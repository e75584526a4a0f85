"""How the API sources wait: the failure vocabulary every source speaks, the retry waits, and `Pacer`, the
one pacer and retrier of the history sources (the backfill's Alpaca and Finnhub clients).

A source turns each failure into `TransientError` (a timeout, a refused or broken connection, a 5xx, a 429,
an answer it cannot parse: worth trying again, after `retry_after` seconds if the server said so) or
`PermanentError` (rejected credentials, a request the API refuses: retrying cannot help).
`retry_wait` is how long to wait before the next try: the server's Retry-After, else a capped exponential
backoff. The producers' polling loop (`sources.polling`) and `Pacer` both use it.

`Pacer.call(what, request)` starts requests at least 60 / `requests_per_minute` seconds apart and tries a
request again after a transient failure, logging one warning line per retry (what failed, the attempt, the
next wait). A request that keeps failing for longer than `patience_seconds` raises `GaveUp`, a refusal
raises `Refused` at once; both carry one line naming the API and its URL setting. Time comes from a
`Clock`, so tests run the waits without waiting.

Delivery guarantee: not applicable (no data is kept); a request that succeeded is never sent again.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import requests

from marketstream import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BACKOFF_SECONDS = 60.0
"""The longest pause between two tries of a history request (a server's Retry-After may ask for more)."""


class TransientError(Exception):
    """Worth retrying: a timeout, a 5xx, a 429. `retry_after` is the server's own wish, in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying cannot help (rejected credentials, an unknown series): stop with this message."""


class GaveUp(RuntimeError):
    """A request kept failing for longer than the pacer's patience."""


class Refused(RuntimeError):
    """The API refused a request; retrying cannot help."""


def retry_wait(source: str, failure: TransientError, failures: int, max_backoff: float, jitter: float = 1.0) -> float:
    """Seconds to wait after the `failures`-th failure in a row: the server's Retry-After (counted as a
    rate-limit wait of `source`), else 2, 4, 8 … seconds, at most `max_backoff`, times `jitter`."""
    if failure.retry_after is not None:
        wait = max(failure.retry_after, 0.0)
        metrics.RATE_LIMIT_WAITS.labels(source).inc()
        metrics.RATE_LIMIT_WAIT_SECONDS.labels(source).inc(wait)
        return wait
    return min(2.0 ** min(failures, 20), max_backoff) * jitter


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The seconds a Retry-After header asks for (None: no header, or an HTTP date this does not read)."""
    try:
        return max(float((headers or {}).get("Retry-After", "")), 0.0)
    except ValueError:
        return None


def describe_failure(exc: requests.RequestException) -> str:
    """A failed HTTP request in a few words, without its URL (which may carry a key in its query)."""
    if isinstance(exc, requests.ConnectTimeout):
        return "the connection timed out"
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.ConnectionError):
        errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
        if errno:
            return f"cannot connect: {errno.group(1).strip()}"
        if "RemoteDisconnected" in str(exc) or "Connection aborted" in str(exc):
            return "the server closed the connection without answering"
        return "the connection failed"
    if isinstance(exc, requests.JSONDecodeError):
        return "the answer is not JSON"
    return type(exc).__name__


@dataclass(frozen=True)
class Clock:
    """Where a pacer reads the time and how it waits: the system's, or a test's."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class Pacer:
    """Requests to one API: paced to `requests_per_minute`, retried through transient failures for at most
    `patience_seconds`. `api` names the API with its URL setting, as the user should read it in a message
    (e.g. "Alpaca's market-data API at https://data.alpaca.markets (ALPACA_DATA_URL)"); `source` labels
    its metrics."""

    def __init__(self, source: str, api: str, requests_per_minute: float, *, patience_seconds: float,
                 clock: Clock = Clock(), max_backoff_seconds: float = MAX_BACKOFF_SECONDS):
        self._source, self._api = source, api
        self._interval = 60.0 / requests_per_minute
        self._patience = patience_seconds
        self._clock = clock
        self._max_backoff = max_backoff_seconds
        self._last_start: float | None = None

    def _start(self) -> float:
        """Waits for this request's turn; returns when it starts."""
        if self._last_start is not None:
            wait = self._last_start + self._interval - self._clock.monotonic()
            if wait > 0:
                self._clock.sleep(wait)
        self._last_start = self._clock.monotonic()
        return self._last_start

    def call(self, what: str, request: Callable[[], T]) -> T:
        """`request()`'s answer; `what` names the request in messages ("trades of AAPL from …")."""
        failures, failing_since = 0, None
        while True:
            started = self._start()
            try:
                answer = request()
            except PermanentError as exc:
                metrics.API_CALLS.labels(self._source, "refused").inc()
                raise Refused(f"{self._api} refused {what}: {exc}") from None
            except TransientError as exc:
                metrics.API_CALLS.labels(self._source, "retried").inc()
                failures += 1
                failing_since = started if failing_since is None else failing_since
                wait = retry_wait(self._source, exc, failures, self._max_backoff)
                failing_for = self._clock.monotonic() - failing_since
                if failing_for + wait > self._patience:
                    raise GaveUp(f"{self._api} kept failing on {what} for {failing_for:.0f} s ({failures} attempts; "
                                 f"patience {self._patience:g} s, BACKFILL_RETRY_MAX_SECONDS): {exc}") from None
                log.warning("%s: %s failed: %s; attempt %d, next in %.0f s", self._api, what, exc, failures, wait)
                self._clock.sleep(wait)
                continue
            metrics.API_CALLS.labels(self._source, "ok").inc()
            return answer
