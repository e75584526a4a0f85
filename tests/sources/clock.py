from datetime import datetime, timedelta, timezone


class Clock:
    """A settable `now()` for sources under test."""

    def __init__(self, now: datetime = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)
