"""The figures of a chaos run from what it recorded: recovery time after each kind of fault (p50/p99 of the
time from a fault's end until every dataset's lag, and how far the bars are behind, is back under its
threshold and stays there for `SETTLED_SECONDS`), the same for the faults that came alone (`single_faults`:
what the recovery target speaks of), throughput over time, the JSON report and its picture (throughput and
lag over time with each fault marked)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chaos.schedule import Fault

LAG_THRESHOLD_SECONDS = 10.0
SETTLED_SECONDS = 2 * LAG_THRESHOLD_SECONDS
"""How long every lag must stay under its threshold to count as recovered. A consumer killed a moment ago
shows no lag yet: its lag passes the threshold only once that many seconds have gone by without a commit, so
a sample under the threshold right after a kill says nothing (such samples made SIGKILLs look recovered in
4 s whose lag then rose to 30 s)."""
CUT_OFF_SECONDS = 5.0
"""A sample that began less than this before a fault and could read nothing was cut off by the fault itself (a
broker killed under its reads): it tells nothing of the state before the fault, the sample before it does."""
BARS = "bars"
"""The name under which a sample holds how far the bars are behind their topic (`pipelines.status`)."""


def lag_thresholds(bars_allowed_lateness_seconds: float) -> dict[str, float]:
    """Under what lag each name of a sample counts as caught up: `LAG_THRESHOLD_SECONDS`, and for the bars, whose
    minute is written once its window closes, a minute and the allowed lateness more."""
    return {BARS: 60 + bars_allowed_lateness_seconds + LAG_THRESHOLD_SECONDS}


@dataclass(frozen=True)
class Sample:
    """Every dataset's figures read at one moment (`at`: seconds since the run's fault phase began; a lag
    None: it could not be read then); `lag_seconds` also holds how far the bars are behind (`BARS`)."""

    at: float
    lag_seconds: dict[str, float | None]
    lag_messages: dict[str, int | None]
    rows: dict[str, int | None]

    def recovered(self, thresholds: Mapping[str, float] = {}) -> bool:
        """Every lag read and under its threshold (`thresholds`, else `LAG_THRESHOLD_SECONDS`)."""
        return all(lag is not None and lag < thresholds.get(name, LAG_THRESHOLD_SECONDS)
                   for name, lag in self.lag_seconds.items())

    def knows_nothing(self) -> bool:
        """No lag could be read."""
        return all(lag is None for lag in self.lag_seconds.values())


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def recovery_seconds(fault: Fault, samples: list[Sample], thresholds: Mapping[str, float] = {}) -> float | None:
    """Seconds from `fault`'s end (its restart, its toxic removed; a kill's moment) to the first sample from
    then on with every lag under its threshold (`Sample.recovered`) in it and in every sample of the
    `SETTLED_SECONDS` after it (or of those left, near the end); None: never within the samples."""
    after = [sample for sample in samples if sample.at >= fault.ends]
    for index, sample in enumerate(after):
        settling = (later for later in after[index:] if later.at <= sample.at + SETTLED_SECONDS)
        if all(later.recovered(thresholds) for later in settling):
            return round(sample.at - fault.ends, 1)
    return None


def recovery_by_kind(faults: list[Fault], samples: list[Sample],
                     thresholds: Mapping[str, float] = {}) -> dict[str, dict]:
    times: dict[str, list[float]] = defaultdict(list)
    never: dict[str, int] = defaultdict(int)
    for fault in faults:
        seconds = recovery_seconds(fault, samples, thresholds)
        if seconds is None:
            never[fault.kind] += 1
        else:
            times[fault.kind].append(seconds)
    return {kind: {"faults": len(times[kind]) + never[kind], "p50_s": percentile(times[kind], 0.5),
                   "p99_s": percentile(times[kind], 0.99), "max_s": max(times[kind], default=None),
                   "not_recovered": never[kind]}
            for kind in sorted({fault.kind for fault in faults})}


def single_faults(faults: list[Fault], samples: list[Sample], thresholds: Mapping[str, float] = {}) -> list[Fault]:
    """The faults that came alone: the last sample before the fault began found every lag under its threshold
    (nothing still recovering), and no other fault was on from its beginning until it had recovered (until
    the samples end, when it never did). Overlapping faults are the soak's other measure; these are what
    "recovery after a single fault" means. A sample the fault cut off (`CUT_OFF_SECONDS`) is not the last one
    before it."""
    alone = []
    for fault in faults:
        before = [sample for sample in samples if sample.at <= fault.at]
        while before and before[-1].at > fault.at - CUT_OFF_SECONDS and before[-1].knows_nothing():
            before.pop()
        if not before or not before[-1].recovered(thresholds):
            continue
        seconds = recovery_seconds(fault, samples, thresholds)
        until = math.inf if seconds is None else fault.ends + seconds
        if not any(other is not fault and other.at < until and other.ends >= fault.at for other in faults):
            alone.append(fault)
    return alone


def recovery_after_single_faults(faults: list[Fault], samples: list[Sample],
                                 thresholds: Mapping[str, float] = {}) -> dict:
    """p50/p99 of the recovery after the faults that came alone (`single_faults`), over all kinds and by kind."""
    alone = single_faults(faults, samples, thresholds)
    times = [seconds for seconds in (recovery_seconds(fault, samples, thresholds) for fault in alone)
             if seconds is not None]
    return {"faults": len(alone), "p50_s": percentile(times, 0.5), "p99_s": percentile(times, 0.99),
            "max_s": max(times, default=None), "not_recovered": len(alone) - len(times),
            "by_kind": recovery_by_kind(alone, samples, thresholds)}


def throughput(samples: list[Sample], dataset: str) -> list[tuple[float, float]]:
    """Rows stored a second between consecutive samples whose row counts were read."""
    points, previous = [], None
    for sample in samples:
        rows = sample.rows.get(dataset)
        if rows is None:
            continue
        if previous is not None and sample.at > previous[0]:
            points.append((sample.at, (rows - previous[1]) / (sample.at - previous[0])))
        previous = (sample.at, rows)
    return points


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def draw(path: Path, samples: list[Sample], faults: list[Fault], title: str,
         thresholds: Mapping[str, float] = {}) -> None:
    """Rows stored a second (top) and lag in seconds (bottom) per dataset over the run, with the thresholds
    (dotted), each fault a band (or a line for a kill) coloured by kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(14, 8))
    datasets = sorted({name for sample in samples for name in sample.lag_seconds})
    for dataset in datasets:
        points = throughput(samples, dataset)
        if points:
            top.plot([t for t, _ in points], [v for _, v in points], label=dataset, linewidth=1)
        lags = [(s.at, s.lag_seconds[dataset]) for s in samples if s.lag_seconds.get(dataset) is not None]
        bottom.plot([t for t, _ in lags], [v for _, v in lags], label=dataset, linewidth=1)
    for threshold in {LAG_THRESHOLD_SECONDS, *thresholds.values()}:
        bottom.axhline(threshold, color="grey", linestyle=":", linewidth=1)
    kinds = sorted({fault.kind for fault in faults})
    colours = {kind: plt.get_cmap("tab10")(index % 10) for index, kind in enumerate(kinds)}
    for axis in (top, bottom):
        for fault in faults:
            if fault.seconds > 0:
                axis.axvspan(fault.at, fault.ends, color=colours[fault.kind], alpha=0.12, linewidth=0)
            else:
                axis.axvline(fault.at, color=colours[fault.kind], alpha=0.6, linewidth=0.8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[kind], alpha=0.4) for kind in kinds]
    top.legend(loc="upper left", fontsize=8)
    bottom.legend(handles + bottom.get_legend_handles_labels()[0],
                  kinds + bottom.get_legend_handles_labels()[1], loc="upper left", fontsize=7, ncol=2)
    top.set_ylabel("rows stored / s")
    bottom.set_ylabel("consumer lag (s)")
    bottom.set_yscale("symlog", linthresh=10)
    bottom.set_xlabel("seconds since the first fault could begin")
    top.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
