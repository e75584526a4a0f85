"""An outage of a server reads as two lines in a dataflow's log: one warning when the first attempt fails
(what failed and why) and one when an attempt succeeds again (how long it lasted, how many attempts failed),
however many attempts fail in between and however many threads make them. Each failed attempt is still
counted by its caller (`marketstream_retries_total`) and logged at DEBUG.

`outage(name)` gives the one `Outage` of this process for `name`, so the uploads and the commits of a sink,
which fail together when the object store is unreachable, report one outage between them.

How to try again is also said once, here: `Backoff` (capped exponential pauses, each failure told to the
server's outage and counted) and `retry` (an action retried with it until it succeeds or is refused)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pyarrow as pa

from marketstream import metrics

log = logging.getLogger(__name__)


class Outage:
    """The state of one server as this process's attempts see it: answering, or failing since a moment."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic, logger: logging.Logger = log):
        self.name = name
        self._clock, self._log = clock, logger
        self._since: float | None = None
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def failing(self) -> bool:
        return self._since is not None

    def failed(self, what: str, error: BaseException | str) -> None:
        """An attempt at `what` failed with `error`; it will be retried."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        text = (text.splitlines() or [""])[0][:300]
        with self._lock:
            self._failures += 1
            if self._since is None:
                self._since = self._clock()
                self._log.warning("%s failing: %s failed (%s); retrying until it answers, one line when it does",
                                  self.name, what, text)
            else:
                self._log.debug("%s still failing: %s failed (attempt %d of this outage, %s)", self.name, what,
                                self._failures, text)

    def answered(self) -> None:
        """An attempt succeeded: ends the outage, if there was one."""
        if self._since is None:  # the common case, without taking the lock
            return
        with self._lock:
            if self._since is None:
                return
            lasted, failures = self._clock() - self._since, self._failures
            self._since, self._failures = None, 0
        self._log.warning("%s answers again after %.1f s of outage (%d failed attempts)", self.name, lasted, failures)


_OUTAGES: dict[str, Outage] = {}
_REGISTRY_LOCK = threading.Lock()


def outage(name: str) -> Outage:
    """This process's `Outage` of `name` (created on first use)."""
    with _REGISTRY_LOCK:
        if name not in _OUTAGES:
            _OUTAGES[name] = Outage(name)
        return _OUTAGES[name]


T = TypeVar("T")


class Backoff:
    """The pauses between attempts at something `server` must answer: 0.5 s, doubled after each failure up
    to `longest`. Each failure is told to the server's `Outage`, counted as a retry of `operation`
    (`marketstream_retries_total`) and slept on; a success ends the outage."""

    def __init__(self, server: str, operation: str, *, longest: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep):
        self._outage, self._operation = outage(server), operation
        self._longest, self._sleep = longest, sleep
        self._delay = 0.5

    def failed(self, what: str, error: BaseException) -> None:
        self._outage.failed(what, error)
        log.debug("%s failed; retrying in %.1fs", what, self._delay)
        metrics.RETRIES.labels(self._operation).inc()
        self._sleep(self._delay)
        self._delay = min(self._delay * 2, self._longest)

    def answered(self) -> None:
        self._outage.answered()


NOT_OUTAGES = (pa.ArrowNotImplementedError, pa.ArrowTypeError)
"""Failures that say the code asked Arrow something it cannot do, not that a server is away: retrying cannot
cure them. (Python's own TypeError and AttributeError stay retried: HTTP clients raise them on connections
reset mid-answer.)"""


def retry(what: str, action: Callable[[], T], backoff: Backoff,
          refusal: Callable[[Exception], Exception | None] = lambda error: None) -> T:
    """`action()`, tried again after each failure with `backoff` until it succeeds; a failure `refusal` turns
    into an error (refused credentials: waiting cannot cure them) raises that error at once, and so does
    one of `NOT_OUTAGES`."""
    while True:
        try:
            result = action()
        except NOT_OUTAGES:
            raise
        except Exception as exc:  # noqa: BLE001 - every other failure is retried: losing the batch is worse
            refused = refusal(exc)
            if refused is not None:
                raise refused from None
            backoff.failed(what, exc)
            continue
        backoff.answered()
        return result
