"""Keeps the dataflows of a chaos run running, as a process manager would (systemd `Restart=always`): a
process that exits is started again after `RESTART_DELAY_SECONDS`. The processes of one Bytewax cluster
are a group: when one exits the others stop by themselves (exit status 4, README *Scaling out*), and once
all have exited (or `CLUSTER_EXIT_WAIT_SECONDS` later, killed) the group is started again together with the
same addresses, so it resumes from its recovery store. No scheduling of its own beyond that.

It also records each process's peak resident memory (VmHWM from /proc, the most any incarnation reached,
read every `PEAK_EVERY_SECONDS` by a thread of its own) and every restart."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

RESTART_DELAY_SECONDS = 1.0
CLUSTER_EXIT_WAIT_SECONDS = 30.0
PEAK_EVERY_SECONDS = 2.0


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Member:
    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    exits: list[int] = field(default_factory=list)


@dataclass
class Group:
    members: list[Member]
    first_exit: float | None = None


class Supervisor:
    def __init__(self, log_dir: Path, cwd: Path):
        self.log_dir, self.cwd = log_dir, cwd
        self.groups: list[Group] = []
        self.peaks: dict[str, float] = {}
        """Peak resident memory (MB) of each process name, over all its incarnations."""
        self.restarts: list[tuple[float, str, int]] = []
        """(time.monotonic(), member, exit status) of each restart."""
        self._peaks_lock = threading.Lock()
        log_dir.mkdir(parents=True, exist_ok=True)

    def add(self, commands: dict[str, tuple[list[str], dict[str, str]]]) -> None:
        """A group of processes (name: command and environment) started, and restarted, together: one
        process, or a Bytewax cluster."""
        self.groups.append(Group([Member(name, argv, env) for name, (argv, env) in commands.items()]))

    def members(self) -> list[Member]:
        return [member for group in self.groups for member in group.members]

    def member(self, name: str) -> Member:
        return next(member for member in self.members() if member.name == name)

    def _start(self, member: Member) -> None:
        log = open(self.log_dir / f"{member.name.replace('/', '-')}.log", "ab")
        log.write(f"==== started at {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        member.process = subprocess.Popen(member.command, cwd=self.cwd, env=member.env, stdout=log, stderr=log,
                                          start_new_session=True)
        log.close()

    def start(self) -> None:
        for group in self.groups:
            for member in group.members:
                self._start(member)
        threading.Thread(target=self._record_peaks, name="peak-rss", daemon=True).start()

    def _record_peaks(self) -> None:
        # apart from `tick`: reading /proc/<pid>/status waits for the process's memory map, 0.1-0.2 s each on
        # the loaded chaos machine, and a dozen of them in `tick` held each restart back 4-7 s
        while True:
            for member in self.members():
                if member.process is not None and member.process.returncode is None:
                    self._record_peak(member)
            time.sleep(PEAK_EVERY_SECONDS)

    def tick(self) -> None:
        """Restart what exited; called about every half second."""
        now = time.monotonic()
        for group in self.groups:
            exited = [m for m in group.members if m.process is None or m.process.poll() is not None]
            if not exited:
                continue
            group.first_exit = group.first_exit or now
            running = [m for m in group.members if m not in exited]
            if running and now - group.first_exit < CLUSTER_EXIT_WAIT_SECONDS:
                continue  # the rest of the cluster stops by itself
            for member in running:
                os.killpg(member.process.pid, signal.SIGKILL)
                member.process.wait()
            if now - group.first_exit < RESTART_DELAY_SECONDS:
                continue
            for member in group.members:
                member.exits.append(member.process.returncode)
                self.restarts.append((now, member.name, member.process.returncode))
                print(f"[supervisor] {member.name} exited with status {member.process.returncode}: restarting",
                      flush=True)
                self._start(member)
            group.first_exit = None

    def _record_peak(self, member: Member) -> None:
        peak = peak_rss_mb(member.process.pid)
        if peak is not None:
            with self._peaks_lock:
                self.peaks[member.name] = max(self.peaks.get(member.name, 0.0), peak)

    def signal(self, name: str, signum: int) -> subprocess.Popen | None:
        """Send `signum` to the running process `name` (and its children); the process signalled."""
        process = self.member(name).process
        if process is None or process.poll() is not None:
            return None
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return None
        return process

    def stop(self, names: tuple[str, ...] | None = None, seconds: float = 90.0) -> dict[str, int | None]:
        """SIGCONT and SIGTERM to the groups holding `names` (default: all), SIGKILL to what still runs
        after `seconds`; no longer restarted. Exit statuses."""
        groups = [g for g in self.groups if names is None or any(m.name in names for m in g.members)]
        stopping = [member for group in groups for member in group.members if member.process]
        for member in stopping:
            if member.process.poll() is None:
                self._record_peak(member)
                for signum in (signal.SIGCONT, signal.SIGTERM):
                    try:
                        os.killpg(member.process.pid, signum)
                    except ProcessLookupError:
                        pass
        deadline = time.monotonic() + seconds
        statuses = {}
        for member in stopping:
            try:
                statuses[member.name] = member.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(member.process.pid, signal.SIGKILL)
                statuses[member.name] = member.process.wait()
        self.groups = [g for g in self.groups if g not in groups]
        return statuses
