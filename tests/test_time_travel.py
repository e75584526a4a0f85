"""Time travel per table: reading `--version table=N` and `--as-of`, and what a table's log can load."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings, strategies as st

from pipelines.query import BadRequest
from pipelines.time_travel import parse_instant, parse_time_travel, stored_versions

TABLES = ["stock", "stock_synthetic", "macro", "news", "bluesky", "bars", "bars_synthetic"]
T0 = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)


@given(st.dictionaries(st.sampled_from(TABLES), st.integers(0, 10**12), max_size=len(TABLES)))
def test_each_table_is_pinned_to_its_own_version(pins):
    specs = [f"{name}={version}" for name, version in pins.items()]
    travel = parse_time_travel(specs, None, TABLES)
    assert {name: int(text) for name, text in travel.versions.items()} == pins and travel.as_of is None


def test_a_table_name_is_read_in_any_case_and_around_blanks():
    assert parse_time_travel([" Stock = 12"], None, TABLES).versions == {"stock": "12"}


@given(st.text(st.characters(codec="utf-8", exclude_characters="="), min_size=1, max_size=20))
def test_an_unknown_table_is_refused_naming_it_and_the_tables_there_are(name):
    assume(name.strip().lower() not in TABLES)
    with pytest.raises(BadRequest, match="no table") as refused:
        parse_time_travel([f"{name}=3"], None, TABLES)
    assert "(tables: bars, bars_synthetic, bluesky, macro, news, stock, stock_synthetic)" in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("specs, says", [
    (["12"], "give TABLE=N, e.g. stock=12"),
    (["stock=1", "STOCK=2"], "stock is pinned twice"),
])
def test_a_malformed_or_repeated_pin_is_refused_in_one_line(specs, says):
    with pytest.raises(BadRequest, match=says):
        parse_time_travel(specs, None, TABLES)


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))])))
def test_an_as_of_time_with_its_offset_is_that_instant(moment):
    assert parse_instant(moment.isoformat()) == moment
    assert parse_time_travel([], moment.isoformat(), TABLES).as_of == moment


@pytest.mark.parametrize("text, says", [
    ("2026-11-24T15:30:00", "give its offset, e.g. 2026-11-24T15:30:00Z"),
    ("2026-11-24", "give its offset"),
    ("yesterday", "not an ISO 8601 time"),
])
def test_an_as_of_time_without_an_offset_or_not_a_time_is_refused(text, says):
    with pytest.raises(BadRequest, match=says):
        parse_instant(text)


def commit(version: int) -> str:
    return f"{version:020d}.json"


def checkpoint(version: int) -> str:
    return f"{version:020d}.checkpoint.parquet"


@settings(max_examples=300)
@given(st.integers(0, 60), st.data())
def test_the_first_loadable_version_is_where_cleaning_up_the_log_stopped(last, data):
    """delta-rs's cleanup deletes the commits and checkpoints before a checkpoint; the versions from that
    checkpoint on stay loadable, and no earlier one."""
    checkpoints = data.draw(st.sets(st.integers(0, last)))
    kept_from = data.draw(st.sampled_from(sorted({0, *checkpoints})))
    files = {commit(v): T0 + timedelta(seconds=v) for v in range(kept_from, last + 1)}
    files |= {checkpoint(v): T0 + timedelta(seconds=v, milliseconds=5) for v in checkpoints if v >= kept_from}
    files |= {"_last_checkpoint": T0, f"{commit(last + 1)}.tmp": T0, f"{last:020d}.crc": T0}
    stored = stored_versions(files)
    assert (stored.first, stored.last) == (kept_from, last)
    assert set(stored.committed) == set(range(kept_from, last + 1))


def test_a_log_without_commits_holds_no_table():
    assert stored_versions({}) is None
    assert stored_versions({"_last_checkpoint": T0}) is None


def test_a_checkpoint_whose_commit_is_gone_is_still_a_first_version():
    stored = stored_versions({checkpoint(10): T0, commit(11): T0 + timedelta(seconds=1)})
    assert (stored.first, stored.last, stored.committed[10]) == (10, 11, T0)


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=30), st.integers(-100, 12_000))
def test_as_of_is_the_last_version_committed_at_or_before_that_time(gaps, seconds):
    times = [T0 + timedelta(seconds=sum(gaps[: v + 1])) for v in range(len(gaps))]
    stored = stored_versions({commit(v): at for v, at in enumerate(times)})
    moment = T0 + timedelta(seconds=seconds)
    expected = max((v for v, at in enumerate(times) if at <= moment), default=None)
    assert stored.as_of(moment) == expected


def test_what_a_table_has_is_said_with_its_first_commit_time():
    stored = stored_versions({commit(v): T0 + timedelta(minutes=v) for v in range(42)})
    assert stored.describe("stock") == "stock has versions 0..41, the first committed at 2026-11-24T14:30:00Z"
