"""FRED observations through fredapi, one Bytewax partition per configured series.

Each poll asks FRED (`series/observations` with a realtime window) for the current vintage of every
observation since `FRED_OBSERVATION_START`, and publishes only the observations that are new or whose
value changed since this series last published. The memory of what was published (date -> value) is the
partition's Bytewax state, so a restart with recovery does not republish history. The first poll reads
the whole vintage history, so `realtime_start` is exact; later polls look back a week for revisions.

Delivery guarantee: at-least-once (see `sources.polling`). fredapi hides HTTP status codes behind
ValueError messages, so failures are classified by FRED's own messages: a rejected API key and an
unknown series are permanent; rate limits, 5xx, timeouts and malformed responses are retried.
"""

from __future__ import annotations

import socket
import urllib.error
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pandas as pd
from fredapi import Fred

from marketstream.macro import MacroObservation
from sources.polling import PermanentError, PollingSource, TransientError

EARLIEST_REALTIME = "1776-07-04"
REVISION_LOOKBACK = timedelta(days=7)
HTTP_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class FredSeries:
    """The series to follow (alias -> FRED series id), the key, the server (None: FRED's own), and the pace."""

    api_key: str = field(repr=False)
    api_url: str | None
    series: dict[str, str]
    observation_start: date
    poll_seconds: float


class FredPoller:
    def __init__(self, fred: FredSeries, alias: str):
        if socket.getdefaulttimeout() is None:
            socket.setdefaulttimeout(HTTP_TIMEOUT_SECONDS)  # fredapi's urlopen has no timeout of its own
        self._fred = Fred(api_key=fred.api_key)
        if fred.api_url:
            self._fred.root_url = fred.api_url.rstrip("/")
        self._alias = alias
        self._series_id = fred.series[alias]
        self._since = fred.observation_start
        self._interval = timedelta(seconds=fred.poll_seconds)

    def initial_state(self) -> dict:
        return {"published": {}, "polled_on": None}

    def _fetch(self, realtime_start: str):
        try:
            return self._fred.get_series_all_releases(self._series_id, realtime_start=realtime_start)
        except ValueError as exc:
            message = str(exc)
            if "api_key" in message:
                raise PermanentError(f"FRED rejected API_KEY_FRED: {message}") from None
            if "series does not exist" in message.lower():
                raise PermanentError(f"FRED has no series {self._series_id!r} (alias {self._alias!r}): {message}") from None
            raise TransientError(f"FRED error for {self._series_id}: {message}") from None
        except ET.ParseError as exc:
            raise TransientError(f"malformed FRED response for {self._series_id}: {exc}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransientError(f"FRED unreachable: {exc}") from None

    def poll(self, state: dict, now: datetime) -> tuple[list[MacroObservation], datetime]:
        polled_on = state["polled_on"]
        realtime_start = EARLIEST_REALTIME if polled_on is None else (polled_on - REVISION_LOOKBACK).isoformat()
        frame = self._fetch(realtime_start)
        latest: dict[date, tuple[date, float | None]] = {}
        for observed, vintage, value in zip(frame.get("date", []), frame.get("realtime_start", []), frame.get("value", [])):
            observed, vintage = observed.date(), vintage.date()
            if observed < self._since:
                continue
            value = None if pd.isna(value) else float(value)  # pandas turns FRED's "." into NaN or NaT
            if observed not in latest or vintage >= latest[observed][0]:
                latest[observed] = (vintage, value)

        published: dict[str, float | None] = state["published"]
        records = []
        for observed in sorted(latest):
            vintage, value = latest[observed]
            key = observed.isoformat()
            if key in published and published[key] == value:
                continue
            published[key] = value
            records.append(MacroObservation(self._alias, self._series_id, observed, value, vintage, now))
        state["polled_on"] = now.date()
        return records, now + self._interval

    def close(self) -> None:
        pass


def fred_source(fred: FredSeries, **kwargs) -> PollingSource:
    """One partition per series alias; `kwargs` go to `PollingSource` (`run_for`, `now`, ...)."""
    return PollingSource(list(fred.series), lambda alias: FredPoller(fred, alias), **kwargs)
