"""The shared shape of the API producers: poll an upstream on a schedule, remember what was published.

A `Poller` knows one API: `poll(state, now)` returns the new records and when to poll next, and updates
its state (what has been published, where the cursor is). `PollingSource` runs pollers as Bytewax
partitions and owns everything else once:

- failures (their vocabulary and waits are `sources.pacing`'s): `TransientError` (timeouts, 5xx, 429) is
  logged and retried with capped exponential backoff, or at the time the server asked for (Retry-After,
  rate-limit reset), and the partition keeps its place;
  `PermanentError` (rejected credentials, unknown series) stops the dataflow with one message naming
  the cause;
- state: each partition's state is snapshotted with Bytewax recovery, so the dedup memory survives a
  restart when the dataflow runs with `-r`.

Delivery guarantee: at-least-once for what the upstream still serves. A record is published before the
state that remembers it is snapshotted, so a crash between the two republishes the records of that one
snapshot interval; records the upstream served while the dataflow was down are fetched on the next poll
as far as each API's window reaches.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, Protocol, TypeVar

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from marketstream import metrics, shutdown
from sources.pacing import PermanentError, TransientError, retry_wait

__all__ = ["PermanentError", "Poller", "PollingSource", "TransientError"]

log = logging.getLogger(__name__)

S = TypeVar("S")
R = TypeVar("R")

MAX_BACKOFF = timedelta(minutes=5)


class Poller(Protocol[S, R]):
    def initial_state(self) -> S: ...

    def poll(self, state: S, now: datetime) -> tuple[list[R], datetime]:
        """New records since `state`, and when to poll next; mutates `state` to remember them."""
        ...

    def close(self) -> None: ...


class _PollingPartition(StatefulSourcePartition[Any, Any], Generic[S, R]):
    def __init__(
        self, source: str, name: str, poller: Poller[S, R], state: S | None, now: Callable[[], datetime],
        stop_at: datetime | None,
    ):
        self._source = source
        self._name = name
        self._poller = poller
        self._state = state if state is not None else poller.initial_state()
        self._now = now
        self._due = now()
        self._failures = 0
        self._stop_at = stop_at

    def next_batch(self) -> list[R]:
        now = self._now()
        if shutdown.requested() or (self._stop_at is not None and now >= self._stop_at):
            raise StopIteration
        if now < self._due:
            return []
        try:
            records, self._due = self._poller.poll(self._state, now)
        except TransientError as exc:
            metrics.API_CALLS.labels(self._source, "retried").inc()
            self._failures += 1
            # jitter, so several producers do not retry in step
            backoff = timedelta(seconds=retry_wait(self._source, exc, min(self._failures, 10),
                                                   MAX_BACKOFF.total_seconds(), jitter=0.75 + random.random() / 2))
            self._due = now + backoff
            log.warning("%s: %s; retry %d in %.1fs", self._name, exc, self._failures, backoff.total_seconds())
            return []
        except PermanentError as exc:
            metrics.API_CALLS.labels(self._source, "refused").inc()
            raise RuntimeError(f"{self._name}: {exc}") from None
        metrics.API_CALLS.labels(self._source, "ok").inc()
        self._failures = 0
        return records

    def next_awake(self) -> datetime:
        return self._due if self._stop_at is None else min(self._due, self._stop_at)

    def snapshot(self) -> S:
        return self._state

    def close(self) -> None:
        self._poller.close()


class PollingSource(FixedPartitionedSource[Any, Any]):
    """One partition per name in `partitions`; `make_poller(name)` builds each partition's poller.

    With `run_for` (`PRODUCE_FOR_SECONDS`) the source ends that long after it starts (demo, tests)."""

    def __init__(
        self,
        partitions: list[str],
        make_poller: Callable[[str], Poller],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        run_for: float | None = None,
    ):
        self._partitions = partitions
        self._make_poller = make_poller
        self._now = now
        self._run_for = run_for

    def list_parts(self) -> list[str]:
        return list(self._partitions)

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _PollingPartition:
        stop_at = self._now() + timedelta(seconds=self._run_for) if self._run_for else None
        return _PollingPartition(step_id, f"{step_id}[{for_part}]", self._make_poller(for_part), resume_state, self._now,
                                 stop_at)
