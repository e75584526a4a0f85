from datetime import datetime, timedelta, timezone


class Clock:
    """A settable `now()` for sources under test."""

    def __init__(self, now: datetime = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


class InstantClock:
    """A `sources.pacing.Clock` whose waits pass at once: it records them and moves its time on."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
