"""A contender run as a Bytewax cluster of `n` processes on this machine (`-i/-a`, as on `n` hosts):

    python -m bench.cluster <n> <dataflow import string>

starts the processes, waits for all of them and prints the figures `bench.run.run_contender` reads, for the
cluster as one contender: `BENCH` from the first process's start (`READY`) to the last one's end, and
`PEAK_RSS_MB` the sum of the processes' own peaks (an upper bound of the cluster's at any moment). The CPU
time of the processes is this launcher's children's, which `wait4` counts. A process that fails fails the
run.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now, one per process of the cluster."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def figures(output: str, names: tuple[str, ...]) -> dict[str, float]:
    """The figures a contender printed, one `NAME value` line each, of those `names`."""
    wanted = tuple(f"{name} " for name in names)
    return {name: float(value) for name, value in (line.split(" ", 1) for line in output.splitlines()
                                                   if line.startswith(wanted))}


def combined(outputs: list[str]) -> dict[str, float]:
    """The cluster's figures from its processes' outputs."""
    each = [figures(output, ("READY", "BENCH", "PEAK_RSS_MB")) for output in outputs]
    missing = [i for i, found in enumerate(each) if not {"READY", "BENCH", "PEAK_RSS_MB"} <= found.keys()]
    if missing:
        raise SystemExit(f"bench.cluster: process {missing[0]} printed no READY, BENCH or PEAK_RSS_MB line")
    began = min(found["READY"] for found in each)
    ended = max(found["READY"] + found["BENCH"] for found in each)
    return {"BENCH": ended - began, "PEAK_RSS_MB": sum(found["PEAK_RSS_MB"] for found in each)}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit() or int(argv[0]) < 1:
        raise SystemExit("usage: python -m bench.cluster <processes> <dataflow import string>")
    count, flow = int(argv[0]), argv[1]
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(count))
    processes = [subprocess.Popen([sys.executable, "-m", "bytewax.run", flow, "-i", str(index), "-a", addresses],
                                  stdout=subprocess.PIPE) for index in range(count)]
    with ThreadPoolExecutor(count) as readers:
        outputs = list(readers.map(lambda process: process.communicate()[0].decode(), processes))
    failed = [process.returncode for process in processes if process.returncode]
    if failed:
        raise SystemExit(f"bench.cluster: a process of {flow} failed with exit code {failed[0]}")
    for name, value in combined(outputs).items():
        print(f"{name} {value:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
