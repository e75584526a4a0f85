"""The FRED source with the real fredapi client against a local fake FRED server."""

from datetime import date

import pytest

from sources.fred import FredSeries, fred_source
from fakes.fred import FakeFred, error_xml
from fakes.http import Reply
from tests.sources.clock import Clock


@pytest.fixture
def fred():
    with FakeFred() as server:
        server.add("CPIAUCSL", "1999-12-01", "168.8", "2000-01-14")
        server.add("CPIAUCSL", "2026-08-01", "322.0", "2026-09-11")
        server.add("CPIAUCSL", "2026-09-01", ".", "2026-10-15")
        server.add("GDP", "2026-04-01", "31000.5", "2026-07-30")
        yield server


def partition(fred, clock, alias="cpi", resume=None, **overrides):
    config = FredSeries(**{"api_key": "fred-test-key", "api_url": fred.root_url,
                           "series": {"cpi": "CPIAUCSL", "gdp": "GDP", "nope": "NOSUCH"},
                           "observation_start": date(2000, 1, 1), "poll_seconds": 3600, **overrides})
    return fred_source(config, now=clock).build_part("macro", alias, resume)


def test_first_poll_publishes_every_observation_since_the_start_date(fred):
    clock = Clock()
    records = partition(fred, clock).next_batch()
    assert [(r.alias, r.series_id, r.date, r.value, r.realtime_start) for r in records] == [
        ("cpi", "CPIAUCSL", date(2026, 8, 1), 322.0, date(2026, 9, 11)),
        ("cpi", "CPIAUCSL", date(2026, 9, 1), None, date(2026, 10, 15)),  # FRED's "." is null
    ]
    assert all(r.fetched_at == clock.now for r in records)


def test_only_new_or_revised_observations_are_published_again(fred):
    clock = Clock()
    part = partition(fred, clock)
    part.next_batch()
    clock.advance(minutes=30)
    assert part.next_batch() == []  # not due yet: hourly
    clock.advance(minutes=31)
    assert part.next_batch() == []  # due, nothing changed
    fred.revise("CPIAUCSL", "2026-08-01", "322.4", on="2026-11-25")
    fred.add("CPIAUCSL", "2026-10-01", "323.9", "2026-11-25")
    clock.advance(hours=1)
    records = part.next_batch()
    assert [(r.date, r.value, r.realtime_start) for r in records] == [
        (date(2026, 8, 1), 322.4, date(2026, 11, 25)),
        (date(2026, 10, 1), 323.9, date(2026, 11, 25)),
    ]
    assert fred.requests[-1][2]["realtime_start"] == "2026-11-18"  # a week's look-back for revisions


def test_a_restart_from_the_snapshot_does_not_republish(fred):
    clock = Clock()
    first = partition(fred, clock)
    assert len(first.next_batch()) == 2
    resumed = partition(fred, clock, resume=first.snapshot())
    assert resumed.next_batch() == []


def test_empty_series_publishes_nothing(fred):
    fred.vintages["GDP"] = []
    assert partition(fred, Clock(), alias="gdp").next_batch() == []


@pytest.mark.parametrize(
    "fault",
    [
        Reply(429, error_xml(429, "Too Many Requests.  Exceeded Rate Limit"), content_type="text/xml"),
        Reply(502, "<html><body>Bad Gateway</body></html>", content_type="text/html"),
        Reply(200, "<observations><observation date=", content_type="text/xml"),
        Reply(200, '<observations><observation realtime_start="2026-01-01" date="2026-01-01" value="abc"/></observations>',
              content_type="text/xml"),
    ],
    ids=["429", "502-html", "truncated-xml", "non-numeric-value"],
)
def test_transient_failures_are_retried_with_backoff(fred, fault, caplog):
    clock = Clock()
    part = partition(fred, clock)
    fred.faults.append(fault)
    assert part.next_batch() == []
    assert part.next_awake() > clock.now
    assert "retry 1" in caplog.text
    clock.now = part.next_awake()
    assert len(part.next_batch()) == 2


def test_rejected_api_key_stops_with_a_clear_message(fred):
    part = partition(fred, Clock(), api_key="wrong-key-0001")
    with pytest.raises(RuntimeError, match="FRED rejected API_KEY_FRED") as error:
        part.next_batch()
    assert "wrong-key-0001" not in str(error.value)


def test_unknown_series_stops_naming_it(fred):
    with pytest.raises(RuntimeError, match="FRED has no series 'NOSUCH' \\(alias 'nope'\\)"):
        partition(fred, Clock(), alias="nope").next_batch()
