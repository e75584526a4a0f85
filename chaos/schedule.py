"""The fault schedule of a chaos run: a pure function of its seed, its length and what can be hit, so that
`--seed` replays a run's faults exactly (when each begins, what it hits, for how long).

Faults overlap freely, except those that would take a quorum away: at most one Kafka broker down at a time
(three KRaft voters, min.insync.replicas=2) and at most one MinIO node (four drives, EC:2), each with
`QUORUM_MARGIN_SECONDS` after the previous one's restart for the node to catch up before the next goes.
`quorum_violations` checks a schedule against that rule; `build_schedule` never returns one that breaks it.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

QUORUM_MARGIN_SECONDS = 20.0
"""Between the restart of a broker (a MinIO node) and the next broker (node) taken down: time for it to
rejoin the ISR (heal its drive) before another one goes."""

MEAN_GAP_SECONDS = 10.0
"""Mean time between two faults' beginnings, by default: most faults overlap another."""

# kind: (weight, shortest, longest seconds of the fault)
KINDS: dict[str, tuple[float, float, float]] = {
    "sigkill_dataflow": (4, 0, 0),           # the supervisor restarts it
    "sigstop_dataflow": (2, 3, 20),          # SIGCONT after the duration
    "kill_broker": (1.5, 5, 30),             # SIGKILL, restarted after the duration
    "kill_controller_leader": (0.7, 5, 30),  # the KRaft quorum's leader, found when the fault begins
    "kill_minio_node": (1.2, 5, 30),
    "restart_postgres": (0.6, 2, 10),
    "network": (4, 5, 30),                   # a toxic on one proxy, removed after the duration
}
QUORUM_GROUP = {"kill_broker": "kafka", "kill_controller_leader": "kafka", "kill_minio_node": "minio"}
TOXICS: dict[str, dict] = {
    "latency": {"latency": 300, "jitter": 150},
    "bandwidth": {"rate": 64},        # KB/s
    "reset_peer": {"timeout": 0},     # every connection reset as soon as it carries data
    "timeout": {"timeout": 0},        # every byte swallowed, the connection held open
}


@dataclass(frozen=True)
class Targets:
    """What a run can hit: its dataflow processes (a member of a Bytewax cluster as `name/i`), the Kafka
    brokers and the MinIO nodes that may be killed, and the Toxiproxy proxies in front of servers."""

    dataflows: tuple[str, ...]
    brokers: tuple[str, ...] = ("kafka-1", "kafka-2", "kafka-3")
    minio_nodes: tuple[str, ...] = ("minio-1", "minio-2", "minio-3", "minio-4")
    proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fault:
    at: float
    """Seconds after the fault phase began."""
    kind: str
    target: str
    seconds: float
    """How long it lasts (0: a kill the supervisor answers at once)."""
    toxic: str | None = None

    @property
    def ends(self) -> float:
        return self.at + self.seconds

    def describe(self) -> str:
        what = f"{self.kind} {self.target}" + (f" {self.toxic}" if self.toxic else "")
        return f"t+{self.at:7.1f}s  {what:<45} {self.seconds:5.1f}s"

    def to_json(self) -> dict:
        return asdict(self)


def _kinds_for(targets: Targets) -> dict[str, tuple[float, float, float]]:
    needs = {"sigkill_dataflow": targets.dataflows, "sigstop_dataflow": targets.dataflows,
             "kill_broker": targets.brokers, "kill_controller_leader": targets.brokers,
             "kill_minio_node": targets.minio_nodes, "network": targets.proxies}
    return {kind: spec for kind, spec in KINDS.items() if needs.get(kind, (True,))}


def build_schedule(seed: int, seconds: float, targets: Targets, mean_gap_seconds: float = MEAN_GAP_SECONDS,
                   only_kinds: tuple[str, ...] = ()) -> list[Fault]:
    """Faults beginning about every `mean_gap_seconds` (exponential gaps) over `seconds`, each over by then;
    a quorum fault that would overlap the previous one of its group (plus the margin) is moved after it, or
    left out when that is past the end. `only_kinds`: faults of these kinds alone (of `KINDS`, with their
    weights among themselves); none: every kind the targets allow."""
    unknown = sorted(set(only_kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; the kinds are {', '.join(KINDS)}")
    rng = random.Random(seed)
    kinds = {kind: spec for kind, spec in _kinds_for(targets).items() if not only_kinds or kind in only_kinds}
    if not kinds:
        raise ValueError(f"no fault of the kinds {list(only_kinds)} can hit these targets")
    names, weights = list(kinds), [spec[0] for spec in kinds.values()]
    free_from = {"kafka": 0.0, "minio": 0.0}
    faults: list[Fault] = []
    at = rng.expovariate(1 / mean_gap_seconds)
    while at < seconds:
        kind = rng.choices(names, weights)[0]
        _, shortest, longest = kinds[kind]
        length = round(rng.uniform(shortest, longest), 1)
        toxic = None
        if kind in ("sigkill_dataflow", "sigstop_dataflow"):
            target = rng.choice(targets.dataflows)
        elif kind == "kill_broker":
            target = rng.choice(targets.brokers)
        elif kind == "kill_controller_leader":
            target = "controller-leader"
        elif kind == "kill_minio_node":
            target = rng.choice(targets.minio_nodes)
        elif kind == "restart_postgres":
            target = "postgres"
        else:
            target, toxic = rng.choice(targets.proxies), rng.choice(sorted(TOXICS))
        begins = round(at, 1)
        group = QUORUM_GROUP.get(kind)
        if group:
            begins = max(begins, free_from[group])
        if begins + length <= seconds:
            faults.append(Fault(begins, kind, target, length, toxic))
            if group:
                free_from[group] = round(begins + length + QUORUM_MARGIN_SECONDS, 1)
        at += rng.expovariate(1 / mean_gap_seconds)
    return sorted(faults, key=lambda fault: fault.at)


def quorum_violations(faults: list[Fault]) -> list[tuple[Fault, Fault]]:
    """Pairs of faults of one quorum group closer than the rule allows (the later one begins before the
    earlier one's restart plus `QUORUM_MARGIN_SECONDS`)."""
    by_group: dict[str, list[Fault]] = {}
    for fault in sorted(faults, key=lambda fault: fault.at):
        if fault.kind in QUORUM_GROUP:
            by_group.setdefault(QUORUM_GROUP[fault.kind], []).append(fault)
    return [(earlier, later) for group in by_group.values() for earlier, later in zip(group, group[1:])
            if later.at < earlier.ends + QUORUM_MARGIN_SECONDS - 1e-9]


def overlapping(faults: list[Fault]) -> int:
    """How many faults begin while another is still on."""
    ordered = sorted(faults, key=lambda fault: fault.at)
    return sum(any(other.at <= fault.at < other.ends for other in ordered[:index])
               for index, fault in enumerate(ordered))
