"""Which version of each Delta table a query reads, and opening the tables at those versions.

- `--version table=N` pins a table to version N; `--as-of T` reads every other table a query names as of
  T: its last version committed at or before T, by the time the store gave the commit file (what delta-rs
  itself goes by). A table not pinned and no `--as-of`: its latest version.
- A pin the table cannot honour is refused in one line naming the table and what it has ("stock has
  versions 0..41, the first committed at …"): an unknown table, a version that is no whole number or that
  the table's log cannot load, a time before the table's first kept version. A table with nothing stored
  (no Delta table yet, or none at T) is reported as absent, not as an error, so a query that does not read
  it still runs.
- A failure to open a table is never mistaken for its absence: the store is asked again, and if it does
  not answer that is said (StoreUnreachable, S3_ENDPOINT_URL).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pipelines.query import BadRequest, QueryFailed, StoreUnreachable, one_line

_COMMIT = re.compile(r"(\d{20})\.json")
_CHECKPOINT = re.compile(r"(\d{20})\.checkpoint(?:\..+)?\.(?:parquet|json)")


@dataclass(frozen=True)
class TimeTravel:
    """Which version of each table a query reads: `versions` pins tables by name (the text given, checked
    against the table when it is opened); the others are read as of `as_of`, or at their latest."""

    versions: Mapping[str, str] = field(default_factory=dict)
    as_of: datetime | None = None


def parse_time_travel(version_specs: Sequence[str], as_of: str | None, tables: Iterable[str]) -> TimeTravel:
    """`--version table=N` (repeatable, one per table) and `--as-of` (ISO 8601 with an offset)."""
    known = sorted(tables)
    versions: dict[str, str] = {}
    for spec in version_specs:
        name, equals, version = spec.partition("=")
        name = name.strip().lower()
        if not equals:
            raise BadRequest(f"--version {spec!r}: give TABLE=N, e.g. stock=12 (tables: {', '.join(known)})")
        if name not in known:
            raise BadRequest(f"--version {spec!r}: no table {name!r} (tables: {', '.join(known)})")
        if name in versions:
            raise BadRequest(f"--version {spec!r}: {name} is pinned twice")
        versions[name] = version.strip()
    return TimeTravel(versions, parse_instant(as_of) if as_of is not None else None)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date and time with its offset (`2026-11-24T15:30:00Z`, `…-05:00`): a moment without one
    would depend on the reader's zone."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(f"--as-of {text!r}: not an ISO 8601 time, e.g. 2026-11-24T15:30:00Z") from None
    if moment.tzinfo is None:
        raise BadRequest(f"--as-of {text!r}: give its offset, e.g. {text.strip()}Z or {text.strip()}-05:00")
    return moment


@dataclass(frozen=True)
class StoredVersions:
    """The versions a Delta table's log lets a reader load, and when the store got each commit."""

    first: int
    last: int
    committed: Mapping[int, datetime]

    def describe(self, name: str) -> str:
        first = self.committed.get(self.first)
        since = f", the first committed at {_iso(first)}" if first else ""
        return f"{name} has versions {self.first}..{self.last}{since}"

    def as_of(self, moment: datetime) -> int | None:
        """The last loadable version committed at or before `moment`; None if the table had none then."""
        before = [v for v in range(self.first, self.last + 1) if v in self.committed and self.committed[v] <= moment]
        return max(before) if before else None


def stored_versions(log_files: Mapping[str, datetime]) -> StoredVersions | None:
    """What a `_delta_log/` holding `log_files` (name -> time the store got it) can load; None if nothing.

    Version v loads from commit 0 and the commits after it, or from a checkpoint at or before v and the
    commits after that. Once old commits are cleaned up, the first loadable version is therefore the oldest
    checkpoint that the unbroken run of commits ending at the last one continues."""
    commits = {int(m.group(1)): at for name, at in log_files.items() if (m := _COMMIT.fullmatch(name))}
    checkpoints = {int(m.group(1)): at for name, at in log_files.items() if (m := _CHECKPOINT.fullmatch(name))}
    if not commits:
        return None
    last = first = max(commits)
    while first - 1 in commits:
        first -= 1
    starts = [0] if first == 0 else [v for v in checkpoints if first - 1 <= v <= last]
    if not starts:
        return None
    start = min(starts)
    committed = {v: commits.get(v) or checkpoints[v] for v in range(start, last + 1)}
    return StoredVersions(start, last, committed)


@dataclass(frozen=True)
class Lake:
    """Where the tables are and how to reach them: `tables` (name -> s3:// URI), deltalake's
    `storage_options`, an s3fs `filesystem` (to list a table's log) and a pyarrow `arrow_filesystem` (to
    read its files) on the same store, and `check_reachable`, which raises StoreUnreachable when the store
    does not answer."""

    tables: Mapping[str, str]
    storage_options: Mapping[str, str]
    filesystem: object
    arrow_filesystem: object
    check_reachable: Callable[[], None]

    def versions(self, name: str) -> StoredVersions | None:
        """What the table's log holds now; None when there is no table."""
        path = f"{self.tables[name].removeprefix('s3://').rstrip('/')}/_delta_log"
        try:
            listing = self.filesystem.ls(path, detail=True, refresh=True)
        except FileNotFoundError:
            return None
        # the listing's times, not a HEAD's: S3 gives those to the millisecond, as delta-rs reads them
        return stored_versions({entry["name"].rsplit("/", 1)[-1]: entry["LastModified"] for entry in listing
                                if entry.get("type") == "file"})


@dataclass
class Opened:
    datasets: dict[str, object] = field(default_factory=dict)
    """Each table opened, by name, as a pyarrow dataset of the version asked for."""
    absent: dict[str, str] = field(default_factory=dict)
    """The tables asked for that hold nothing yet (or did not at `--as-of`), with their URI."""


def open_tables(lake: Lake, names: Iterable[str], travel: TimeTravel) -> Opened:
    """The tables `names` and every table `travel` pins, at the versions it asks for."""
    try:
        return _open_tables(lake, names, travel)
    except (BadRequest, QueryFailed, StoreUnreachable):
        raise
    except Exception as exc:  # noqa: BLE001 - the store's client failing mid-listing: down, else one line
        lake.check_reachable()
        raise QueryFailed(f"cannot read the lake: {one_line(exc)}") from None


def _open_tables(lake: Lake, names: Iterable[str], travel: TimeTravel) -> Opened:
    opened = Opened()
    for name in dict.fromkeys([*names, *travel.versions]):
        version = _pinned(lake, name, travel.versions[name]) if name in travel.versions else None
        if version is None and travel.as_of is not None:
            version = _version_as_of(lake, name, travel.as_of)
            if version is None:
                opened.absent[name] = lake.tables[name]
                continue
        dataset = _open(lake, name, version)
        if dataset is None:
            opened.absent[name] = lake.tables[name]
        else:
            opened.datasets[name] = dataset
    return opened


def _pinned(lake: Lake, name: str, text: str) -> int:
    if re.fullmatch(r"\d+", text, re.ASCII):
        return int(text)
    raise BadRequest(f"--version {name}={text}: a version is a whole number from 0; {_what_it_has(lake, name)}")


def _what_it_has(lake: Lake, name: str) -> str:
    stored = lake.versions(name)
    return stored.describe(name) if stored else f"{name} has no versions (no Delta table at {lake.tables[name]})"


def _version_as_of(lake: Lake, name: str, moment: datetime) -> int | None:
    stored = lake.versions(name)
    if stored is None:
        return None
    version = stored.as_of(moment)
    if version is None:
        raise BadRequest(f"--as-of {_iso(moment)}: {stored.describe(name)}, after that time")
    return version


def _open(lake: Lake, name: str, version: int | None):
    """The table as a pyarrow dataset, or None when there is no table. A failure is classified: the store
    down (StoreUnreachable), a version the table lacks (BadRequest), anything else (QueryFailed)."""
    from deltalake import DeltaTable

    from marketstream.lake import dataset_of

    uri = lake.tables[name]
    try:
        table = DeltaTable(uri, version=version, storage_options=dict(lake.storage_options))
        return dataset_of(table, uri, lake.arrow_filesystem)
    except Exception as exc:  # noqa: BLE001 - delta-rs raises OSError or DeltaError alike; sorted out below
        error = exc
    lake.check_reachable()
    stored = lake.versions(name)
    if version is not None and (stored is None or not stored.first <= version <= stored.last):
        raise BadRequest(f"--version {name}={version}: {_what_it_has(lake, name)}")
    if stored is None:
        return None
    raise QueryFailed(f"cannot read {name} at {uri}: {one_line(error)}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
