"""`make chaos` (`python -m chaos.run`): a seeded, randomized fault soak of the whole system at steady load on
the cluster profile of the stack, then a reconciliation of everything Kafka acknowledged against the lake.

What runs, each dataflow as `marketstream run` with recovery, kept running by `chaos.supervisor`:
  load       stock_produce (synthetic trades, `--rate` a second), macro_produce, news_produce and
             bluesky_produce against local fake APIs (`fakes/`) that publish new data every second;
             from this process, canary trades at `CANARY_PER_SECOND` whose acknowledgements are recorded,
             and bad messages (a known number per topic) for the dead-letter check
  consumers  stock_consume, macro_consume, news_consume, bluesky_consume, bars_consume as a Bytewax
             cluster of two processes, lake_maintenance
  faults     `chaos.schedule` from `--seed`: SIGKILL or SIGSTOP/SIGCONT of any dataflow process, kill and
             restart of a broker (or of the KRaft controllers' leader), of a MinIO node, a PostgreSQL
             restart, and Toxiproxy toxics (latency, bandwidth, reset_peer, timeout) between the dataflows
             and each Kafka broker, MinIO, PostgreSQL and the fake APIs

The dataflows reach Kafka, MinIO, PostgreSQL and the fake APIs through Toxiproxy: each broker has a
listener advertised at its proxy's port (`KAFKA_PROXY_PORT`, stack/kafka-node-properties.sh), so a client
bootstrapped through the proxies is told the proxies' addresses. The canaries, the lag samples and the
reconciliation reach the servers directly. The clients' one MinIO endpoint is a proxy in front of node 1;
when node 1 is killed the proxy forwards to node 2 until node 1 is back, as a load balancer in front of the
nodes would.

At the end: the load stops, the consumers are stopped and run once more to the end of their topics from
their recovery stores (`KAFKA_STOP_AT_END=true`), and `chaos.reconcile` checks every message of every topic
(what Kafka acknowledged) against the tables: each valid record stored exactly once by its identity
(`Dataset.identity`), from one of the offsets that carried it, every canary trade acknowledged is in Kafka and in the
table, dead letters exactly the bad messages, the bars equal to the SQL aggregate of the trades, no object
outside the layout. The report goes to `chaos/results/<time>-<seed>.json` and `.png`; exit 1 when anything
is lost or doubled, 2 on a setting that cannot work.

It starts from empty topics and buckets: it deletes the datasets' topics and buckets first, so it refuses
to run against Kafka or a store that is not on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import atexit
import heapq
import functools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from deltalake import DeltaTable
from dotenv import dotenv_values

from fakes.bluesky import FakeBluesky
from fakes.finnhub import FakeFinnhub
from fakes.fred import FakeFred
from chaos.kafka_readback import read_topic
from chaos.reconcile import bars_differences, deliveries, outside_layout
from chaos.report import BARS, LAG_THRESHOLD_SECONDS, Sample, draw, lag_thresholds, recovery_after_single_faults, \
    recovery_by_kind, write_json
from chaos.schedule import MEAN_GAP_SECONDS, QUORUM_GROUP, TOXICS, Fault, Targets, build_schedule, overlapping, quorum_violations
from chaos.supervisor import Supervisor
from chaos.toxiproxy import Proxy, ToxiproxyAPI
from marketstream import schemas
from marketstream.companies import load_companies
from marketstream.datasets import DATASETS, STOCK, Dataset
from marketstream.kafka_cluster import KafkaCluster
from marketstream.lake import LoadedTables, arrow_filesystem, dataset_of, lake_filesystem, read_delta
from marketstream.records import InvalidRecord
from marketstream.settings import Settings, load_settings
from pipelines.status import dataset_status, dataset_tables, derived_status

REPO = Path(__file__).resolve().parents[1]
CANARY_PER_SECOND = 20
SAMPLE_EVERY_SECONDS = 5.0
WARMUP_SECONDS = 30.0
DRAIN_SECONDS = 300.0
FAKE_SERIES = {"gdp": "GDP", "cpi": "CPIAUCSL", "fed_funds_rate": "DFF", "treasury_10y": "DGS10",
               "unemployment_rate": "UNRATE"}
NEWS_TICKERS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL")
BLUESKY_KEYWORD = "earnings"
BAD_MESSAGES = (b"not json {", b'{"symbol": "AAPL", "price": -5}', b'{"a": 1, "a": 2}')
PRODUCERS = ("stock_produce", "macro_produce", "news_produce", "bluesky_produce")
CONSUMERS = ("stock_consume", "macro_consume", "news_consume", "bluesky_consume")
BARS_CLUSTER = ("bars_consume/0", "bars_consume/1")
KAFKA_PROXIES = ("kafka-1", "kafka-2", "kafka-3")
"""The proxies in front of each broker's proxied listener: the dataflows' Kafka traffic passes them."""


def say(text: str) -> None:
    print(f"[chaos {datetime.now(timezone.utc):%H:%M:%S}] {text}", flush=True)


class Refused(Exception):
    """A setting the run cannot work with; the message names it."""


# ---------------------------------------------------------------- environment

def read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        raise Refused(f"no environment file at {path} (--env-file): `make chaos` writes .stack-cluster/env")
    return {name: value or "" for name, value in dotenv_values(path).items()}


def settings_from(env: dict[str, str]) -> Settings:
    fields = {name.lower(): value for name, value in env.items()
              if name.lower() in Settings.model_fields and value != ""}
    return load_settings(_env_file=None, **fields)


def check_local(settings: Settings) -> None:
    hosts = [address.rsplit(":", 1)[0] for address in settings.kafka_bootstrap_servers.split(",")]
    if any(host not in ("127.0.0.1", "localhost") for host in hosts):
        raise Refused("KAFKA_BOOTSTRAP_SERVERS is not on 127.0.0.1: the chaos run deletes the datasets' topics")
    if "//127.0.0.1:" not in (settings.s3_endpoint_url or "") and "//localhost:" not in (settings.s3_endpoint_url or ""):
        raise Refused("S3_ENDPOINT_URL is not on 127.0.0.1: the chaos run deletes the datasets' buckets")


class Stack:
    """The cluster profile's servers, as `stack/stack.sh` runs them: killed by their pids, each restarted by
    `start` alone (one `up` starts whatever is not running and waits for every server: a node's restart then
    waited for another's, and for nodes killed meanwhile, 110-290 s on the loaded box where one took 5-60)."""

    def __init__(self, env_file: Path, env: dict[str, str]):
        self.env = {**os.environ, "ENV_FILE": str(env_file)}
        self.dir = Path(os.environ.get("STACK_DIR") or REPO / ".stack-cluster")
        self._lock = threading.Lock()
        self.toxiproxy_port = int(env.get("TOXIPROXY_PORT") or 19474)

    def pid(self, name: str) -> int:
        return int((self.dir / "pids" / f"{name}.pid").read_text().split()[0])

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        os.kill(self.pid(name), signum)

    def up(self, patience: float = 900.0) -> None:
        """`stack.sh up` until every server answers: a Kafka node reloading its logs after a kill on a busy
        machine can take longer than one `up` waits (120 s), and it must not be left down (the next broker
        fault would then take the quorum away)."""
        with self._lock:
            self._until_it_succeeds(["up"], patience)

    def start(self, name: str, patience: float = 900.0) -> None:
        """`stack.sh start name` until that server answers (a Kafka node reloading its logs after a kill on a
        busy machine can take longer than one `start` waits)."""
        self._until_it_succeeds(["start", name], patience)

    def _until_it_succeeds(self, command: list[str], patience: float) -> None:
        deadline = time.monotonic() + patience
        while True:
            done = subprocess.run([REPO / "stack" / "stack.sh", *command], env=self.env, timeout=600,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"stack/stack.sh {' '.join(command)} kept failing for {patience:g} s: "
                                   + done.stderr.strip().splitlines()[-1][:200])

    def alive(self, name: str) -> bool:
        try:
            os.kill(self.pid(name), 0)
            return True
        except (OSError, ValueError):
            return False

    def controller_leader(self) -> str:
        """The node the KRaft quorum's latest epoch elected, from each node's quorum-state file."""
        states = []
        for node in (1, 2, 3):
            try:
                states.append(json.loads((self.dir / f"kafka-{node}" / "data" / "__cluster_metadata-0" /
                                          "quorum-state").read_text()))
            except (OSError, ValueError):
                continue
        best = max(states, key=lambda state: state.get("leaderEpoch", -1))
        return f"kafka-{best['leaderId']}"

    def toxiproxy(self, command: str) -> None:
        subprocess.run([REPO / "stack" / "toxiproxy.sh", command], check=True, timeout=600,
                       env={**os.environ, "STACK_DIR": str(self.dir), "TOXIPROXY_PORT": str(self.toxiproxy_port)})


def quiet_cluster(settings: Settings) -> KafkaCluster:
    """The brokers as this process reaches them, without librdkafka's line per refused connection (a broker
    down is the point of the run; the dataflows' own logs keep those lines)."""
    cluster = settings.kafka_cluster()
    return replace(cluster, client_config={**cluster.client_config, "log_level": 2})


def clean_slate(settings: Settings) -> None:
    """No topic or bucket of a dataset left from an earlier run."""
    topics = [name for dataset in DATASETS.values() for name in (dataset.topic, f"{dataset.topic}.dlq")]
    admin = AdminClient(settings.kafka_client_config())
    existing = set(admin.list_topics(timeout=30).topics)
    doomed = [topic for topic in topics if topic in existing]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            future.result()
        deadline = time.monotonic() + 60
        while set(doomed) & set(admin.list_topics(timeout=30).topics) and time.monotonic() < deadline:
            time.sleep(1)
    filesystem = lake_filesystem(settings)
    for bucket in {*(dataset.bucket for dataset in DATASETS.values()), settings.bars_bucket}:
        if filesystem.exists(bucket):
            filesystem.rm(bucket, recursive=True)


# ---------------------------------------------------------------- load from this process

class FakeAPIs:
    """FRED, Finnhub and Bluesky fakes that publish something new every second while `grow` runs."""

    def __init__(self):
        self.fred, self.finnhub, self.bluesky = FakeFred(), FakeFinnhub(), FakeBluesky()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grow, daemon=True)
        self.published = Counter()

    def __enter__(self):
        for fake in (self.fred, self.finnhub, self.bluesky):
            fake.__enter__()
        for alias, series in FAKE_SERIES.items():
            self.fred.add(series, "2000-01-01", "100.0", "2000-02-01")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        for fake in (self.fred, self.finnhub, self.bluesky):
            fake.__exit__(*exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _grow(self) -> None:
        tick = 0
        while not self._stop.wait(1.0):
            tick += 1
            now = datetime.now(timezone.utc)
            if tick % 5 == 0:
                observed = (date(2000, 1, 1) + timedelta(days=tick)).isoformat()
                for series in FAKE_SERIES.values():
                    self.fred.add(series, observed, f"{100 + tick / 7:.3f}", now.date().isoformat())
                    self.published["macro"] += 1
            self.finnhub.publish(NEWS_TICKERS[tick % len(NEWS_TICKERS)], 10_000 + tick, now, f"Chaos news {tick}")
            self.published["news"] += 1
            self.bluesky.post(tick, f"{BLUESKY_KEYWORD} update {tick}", now.replace(microsecond=0))
            self.published["bluesky"] += 1


class Injector:
    """From this process: canary trades at `CANARY_PER_SECOND` (acknowledgements recorded by trade id) and
    bad messages at scheduled moments (acknowledged ones recorded by topic, partition, offset)."""

    def __init__(self, settings: Settings, seed: int, bad_moments: list[tuple[float, str]]):
        self._producer = Producer({**quiet_cluster(settings).producer_config(), "linger.ms": 20,
                                   "message.timeout.ms": 600_000})
        self._seed, self._bad = seed, sorted(bad_moments)
        self.canary_sent = 0
        self.canary_acked: set[str] = set()
        self.bad_sent = 0
        self.bad_acked: set[tuple[str, int, int]] = set()
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def _delivered(self, error, message) -> None:
        if error is not None:
            self.failed.append(str(error))
        elif message.key() == b"chaos-bad":
            self.bad_acked.add((message.topic(), message.partition(), message.offset()))
        else:
            self.canary_acked.add(orjson.loads(message.value())["trade_id"])

    def _send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.1)

    def _run(self) -> None:
        bad = list(self._bad)
        while not self._stop.is_set():
            elapsed = time.monotonic() - self.started
            while self.canary_sent < int(elapsed * CANARY_PER_SECOND):
                n = self.canary_sent
                trade = {"symbol": NEWS_TICKERS[n % len(NEWS_TICKERS)], "price": 100.0 + n % 89, "size": 1 + n % 50,
                         "timestamp": datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
                         "exchange": "V", "conditions": ["@"], "trade_id": f"chaos-{self._seed}-{n}", "tape": "C",
                         "source": "synthetic"}
                self._send(DATASETS["stock"].topic, trade["symbol"].encode(), orjson.dumps(trade))
                self.canary_sent += 1
            while bad and bad[0][0] <= elapsed:
                _, topic = bad.pop(0)
                self._send(topic, b"chaos-bad", BAD_MESSAGES[self.bad_sent % len(BAD_MESSAGES)])
                self.bad_sent += 1
            self._producer.poll(0.05)

    def start(self) -> "Injector":
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stops sending; the messages neither acknowledged nor failed after two minutes."""
        self._stop.set()
        self._thread.join(30)
        return self._producer.flush(120)


# ---------------------------------------------------------------- dataflows

def dataflow_env(env: dict[str, str], proxies: dict[str, Proxy], fakes: FakeAPIs, recovery: Path,
                 per_ticker_rate: float) -> dict[str, str]:
    scrubbed = {name: value for name, value in os.environ.items()
                if not name.startswith(("S3_", "POSTGRES_", "KAFKA_", "API_", "STOCK_", "BATCH_", "LAKE_"))}
    overrides = {
        "PYTHONPATH": str(REPO), "RECOVERY_DIRECTORY": str(recovery), "SNAPSHOT_INTERVAL_SECONDS": "5",
        "KAFKA_STOP_AT_END": "false", "BATCH_MAX_AGE_SECONDS": "2", "S3_RETRY_MAX_SECONDS": "5",
        "S3_ENDPOINT_URL": f"https://{proxies['minio'].address}", "POSTGRES_PORT": str(proxies["postgres"].port),
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(proxies[name].address for name in KAFKA_PROXIES),
        "STOCK_SOURCE": "synthetic", "SYNTHETIC_TRADES_PER_SECOND": f"{per_ticker_rate:.4f}",
        "TICKERS_REFRESH_SECONDS": "30",
        "API_KEY_FRED": fakes.fred.api_key, "FRED_API_URL": f"http://{proxies['fred'].address}/fred",
        "FRED_SERIES": ",".join(f"{alias}:{series}" for alias, series in FAKE_SERIES.items()),
        "MACRO_POLL_SECONDS": "5",
        "FINNHUB_API_KEY": fakes.finnhub.token, "FINNHUB_API_URL": f"http://{proxies['finnhub'].address}/api/v1",
        "NEWS_POLL_SECONDS": "10", "FINNHUB_CALLS_PER_MINUTE": "60",
        "BLUESKY_IDENTIFIER": fakes.bluesky.identifier, "BLUESKY_PASSWORD": fakes.bluesky.password,
        "BLUESKY_API_URL": f"http://{proxies['bluesky'].address}", "BLUESKY_KEYWORDS": BLUESKY_KEYWORD,
        "BLUESKY_CYCLE_SECONDS": "10", "BLUESKY_KEYWORD_DELAY_SECONDS": "0",
        "LAKE_MAINTENANCE_INTERVAL_SECONDS": "60", "METRICS_PORT": "",
    }
    merged = {**scrubbed, **env, **overrides}
    return {name: value for name, value in merged.items() if value != ""}


def command(dataflow: str, *bytewax_args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "run", dataflow, *bytewax_args]


def bars_cluster(base_env: dict[str, str], recovery: Path, ports: tuple[int, int],
                 **changes: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The two processes of the bars_consume cluster, each with a recovery directory of its own (as on two
    hosts)."""
    addresses = ";".join(f"127.0.0.1:{port}" for port in ports)
    return {name: (command("bars_consume", "-i", str(index), "-a", addresses),
                   {**base_env, "RECOVERY_DIRECTORY": str(recovery / f"host{index}"), **changes})
            for index, name in enumerate(BARS_CLUSTER)}


# ---------------------------------------------------------------- faults

GROUP_NODES = {"kafka": ("kafka-1", "kafka-2", "kafka-3"), "minio": ("minio-1", "minio-2", "minio-3", "minio-4"),
               "postgres": ("postgres",)}
ONE_DOWN_AT_A_TIME = {**QUORUM_GROUP, "restart_postgres": "postgres"}
"""Faults that take a server down, by the group of which the runner takes one down at a time, once the last
one is back: a quorum's, and PostgreSQL, which a stop while it is still starting would miss."""


class FaultRunner:
    """Carries out a schedule against the supervisor, the stack and Toxiproxy; what happened, with errors."""

    def __init__(self, supervisor: Supervisor, stack: Stack, proxies: dict[str, Proxy], journal: Path | None = None,
                 balanced: tuple[list[Proxy], str, str] | None = None):
        """`journal`: a file each record is also appended to as it happens (an interrupted run keeps it);
        `balanced`: the proxies the clients reach MinIO through, with the addresses of node 1 (theirs) and of
        node 2: while node 1 is down they forward to node 2, as a load balancer in front of the nodes would."""
        self.supervisor, self.stack, self.proxies, self.journal = supervisor, stack, proxies, journal
        self.balanced = balanced
        self.log: list[dict] = []
        self._paused: dict[int, subprocess.Popen] = {}
        self._threads: list[threading.Thread] = []
        self._restarting: dict[str, threading.Thread] = {}
        self._down: set[str] = set()
        self._begun: dict[int, Fault] = {}
        self._ended: dict[int, float] = {}
        self._stopped: dict[int, str] = {}
        """The server each node fault took down, by the fault's index: the one its end starts again."""

    def _now(self) -> float:
        return round(time.monotonic() - self.began, 1)

    def _record(self, fault: Fault, what: str, **details) -> None:
        entry = {"at": self._now(), "fault": fault.describe().strip(), "what": what,
                 **details}
        self.log.append(entry)
        if self.journal:
            with open(self.journal, "a") as journal:
                journal.write(json.dumps(entry) + "\n")

    def _in_background(self, action, fault: Fault) -> None:
        def run():
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - a fault that could not be carried out is reported
                self._record(fault, "error", error=f"{type(exc).__name__}: {exc}"[:300])
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def begin(self, index: int, fault: Fault) -> None:
        if fault.kind == "sigkill_dataflow":
            self._record(fault, "killed" if self.supervisor.signal(fault.target, signal.SIGKILL) else "not running")
        elif fault.kind == "sigstop_dataflow":
            process = self.supervisor.signal(fault.target, signal.SIGSTOP)
            if process:
                self._paused[index] = process
            self._record(fault, "stopped" if process else "not running")
        elif fault.kind in ("kill_broker", "kill_minio_node", "kill_controller_leader"):
            name = self.stack.controller_leader() if fault.kind == "kill_controller_leader" else fault.target
            self._down.add(QUORUM_GROUP[fault.kind])
            self.stack.kill(name)
            self._stopped[index] = name
            self._record(fault, f"killed {name}")
            if name == "minio-1" and self.balanced:
                self._fail_over(fault, self.balanced[2])
        elif fault.kind == "restart_postgres":
            self._down.add(ONE_DOWN_AT_A_TIME[fault.kind])
            self.stack.kill("postgres", signal.SIGINT)  # fast shutdown: a killed postmaster leaves its backends
            self._stopped[index] = "postgres"
            self._record(fault, "stopped postgres")
        elif fault.kind == "network":
            proxy = self.proxies[fault.target]
            stream = "upstream" if fault.toxic in ("reset_peer", "timeout") or (
                fault.toxic == "bandwidth" and fault.target == "minio") else "downstream"
            proxy.add(f"chaos-{index}", fault.toxic, stream=stream, **TOXICS[fault.toxic])
            self._record(fault, f"toxic on {stream}")

    def _fail_over(self, fault: Fault, node: str) -> None:
        for proxy in self.balanced[0]:
            proxy.point_to(node)
        self._record(fault, f"MinIO clients forwarded to {node}")

    def end(self, index: int, fault: Fault) -> None:
        if fault.kind == "sigstop_dataflow" and index in self._paused:
            process = self._paused.pop(index)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGCONT)
            self._ended[index] = self._now()
            self._record(fault, "continued")
        elif fault.kind in ("kill_broker", "kill_minio_node", "kill_controller_leader", "restart_postgres"):
            def restart():
                began = time.monotonic()
                self.stack.start(self._stopped[index])
                self._ended[index] = self._now()
                self._record(fault, "restarted", up_seconds=round(time.monotonic() - began, 1))
                if fault.target == "minio-1" and self.balanced:
                    self._fail_over(fault, self.balanced[1])
            self._in_background(restart, fault)
            group = ONE_DOWN_AT_A_TIME[fault.kind]
            self._restarting[group] = self._threads[-1]
            self._down.discard(group)
        elif fault.kind == "network":
            self.proxies[fault.target].remove(f"chaos-{index}")
            self._ended[index] = self._now()
            self._record(fault, "toxic removed")

    def run(self, faults: list[Fault], began: float, tick, until: float) -> list[Fault]:
        """Each fault at its time, `tick` (the supervisor's) in between, until the last one has ended; the
        faults as carried out. A broker or MinIO node is taken down only once the last one of its group is
        back (its `stack start` returned), and PostgreSQL only once it is back (`ONE_DOWN_AT_A_TIME`): a restart
        slower than the schedule's margin (Kafka reloading its logs after a kill takes a minute on a busy
        machine) delays the next one rather than break the quorum or miss the server, and one delayed past
        `until` (seconds after `began`) is left out and recorded as skipped. Each fault as carried out has
        its scheduled length until `as_carried_out` knows how long it really lasted."""
        self.began = began
        events = [(fault.at, 0, index) for index, fault in enumerate(faults)]
        heapq.heapify(events)
        done = self._begun
        while events:
            at, phase, index = events[0]
            now = time.monotonic() - began
            if now < at:
                tick()
                time.sleep(0.2)
                continue
            heapq.heappop(events)
            fault = faults[index]
            group = ONE_DOWN_AT_A_TIME.get(fault.kind)
            restarting = self._restarting.get(group)
            if phase == 0 and group and (group in self._down or (restarting and restarting.is_alive())
                                         or not all(self.stack.alive(name) for name in GROUP_NODES[group])):
                if now + 1.0 > until:
                    self._record(fault, "skipped: the last one of its group was still restarting at the end")
                else:
                    heapq.heappush(events, (now + 1.0, 0, index))
                continue
            try:
                if phase == 0:
                    self.begin(index, fault)
                    done[index] = replace(fault, at=round(now, 1))
                    if fault.seconds > 0:
                        heapq.heappush(events, (now + fault.seconds, 1, index))
                else:
                    self.end(index, fault)
            except Exception as exc:  # noqa: BLE001 - reported; the run goes on
                self._record(fault, "error", error=f"{type(exc).__name__}: {exc}"[:300])
        return [done[index] for index in sorted(done)]

    def as_carried_out(self) -> list[Fault]:
        """The faults begun, each lasting until it really ended: a node or PostgreSQL until its restart
        returned (on a busy machine minutes after the scheduled end), a paused process until it was continued,
        a toxic until it was removed; a kill of a dataflow is a moment. One whose end has not come yet (call
        this after `settle`) lasts until now."""
        now = self._now()
        return [replace(fault, seconds=round(max(0.0, self._ended.get(index, now) - fault.at), 1))
                if fault.seconds > 0 else fault for index, fault in sorted(self._begun.items())]

    def settle(self) -> None:
        """Every restart finished, every paused process continued, every toxic gone."""
        for thread in self._threads:
            thread.join(600)
        for process in self._paused.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGCONT)
        self._paused.clear()
        next(iter(self.proxies.values())).server.reset()
        self.stack.up()


SAMPLE_TIMEOUT_SECONDS = 30.0


class Sampler:
    """Every dataset's lag and rows, and how far the bars are behind (as `BARS`), read like `marketstream
    status` does, every `SAMPLE_EVERY_SECONDS`."""

    def __init__(self, settings: Settings, journal: Path | None = None):
        """`journal`: a file each sample is also appended to as it is read (an interrupted run keeps them)."""
        self.settings, self.journal = settings, journal
        self.samples: list[Sample] = []
        # the samples must not load the store more than the dataflows they watch: only new commits are read
        self._tables = LoadedTables()
        self.began = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @functools.cached_property
    def _log_filesystem(self):
        return arrow_filesystem(self.settings)

    def _sample_within(self, seconds: float) -> Sample:
        """A sample, or one that knows nothing when reading it took longer than `seconds`: a read stuck on a
        connection a fault left half-open must not end the sampling (the stuck thread is left to itself)."""
        at = time.monotonic() - self.began
        found: list[Sample] = []
        reader = threading.Thread(target=lambda: found.append(self._sample(at)), daemon=True)
        reader.start()
        deadline = time.monotonic() + seconds
        while not found and time.monotonic() < deadline:  # short sleeps: a timed join never returns under libfaketime
            time.sleep(0.05)
        if found:
            return found[0]
        unknown = {name: None for name in (*DATASETS, BARS)}
        return Sample(round(at, 1), dict(unknown), dict(unknown), dict(unknown))

    def _sample(self, at: float) -> Sample:
        lag_seconds, lag_messages, rows = {}, {}, {}
        cluster, options = quiet_cluster(self.settings), self.settings.delta_storage_options()
        now = datetime.now(timezone.utc)
        read = {}

        def status_of(dataset: Dataset):
            return dataset_status(
                dataset, dataset_tables(dataset, self.settings.stock_synthetic_prefix), cluster, options,
                self._log_filesystem, now=now, today=now.date(), closed_after_days=1, deadline=time.monotonic() + 3,
                open_table=self._tables)

        # the datasets at once: a sample's time is what a recovery can be told to within (threads of this sample
        # alone: one stuck on a half-open connection is left to itself, as `_sample_within` leaves the sample)
        readers = ThreadPoolExecutor(max_workers=len(DATASETS), thread_name_prefix="sample")
        reading = {name: readers.submit(status_of, dataset) for name, dataset in DATASETS.items()}
        readers.shutdown(wait=False)
        for name, future in reading.items():
            try:
                read[name] = status = future.result()
                lag_seconds[name], lag_messages[name] = status.lag_seconds, status.lag_messages
                rows[name] = sum(table.rows or 0 for table in status.tables)
            except Exception:  # noqa: BLE001 - a store or broker down: this sample does not know
                lag_seconds[name] = lag_messages[name] = rows[name] = None
        lag_seconds[BARS] = lag_messages[BARS] = rows[BARS] = None
        if STOCK.name in read:
            try:
                bars = derived_status(BARS, read[STOCK.name], options, self._log_filesystem,
                                      self.settings.stock_synthetic_prefix, self.settings.bars_bucket, now=now,
                                      today=now.date(), closed_after_days=1, open_table=self._tables)
                lag_seconds[BARS] = bars.behind_seconds
                rows[BARS] = sum(table.rows or 0 for table in bars.tables)
            except Exception:  # noqa: BLE001 - the store down: this sample does not know
                pass
        return Sample(round(at, 1), lag_seconds, lag_messages, rows)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            sample = self._sample_within(SAMPLE_TIMEOUT_SECONDS)
            self.samples.append(sample)
            if self.journal:
                with open(self.journal, "a") as journal:
                    journal.write(json.dumps(sample.__dict__) + "\n")
            self._stop.wait(max(0.0, SAMPLE_EVERY_SECONDS - (time.monotonic() - started)))

    def start(self, began: float) -> "Sampler":
        self.began = began
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


# ---------------------------------------------------------------- the end: drain and reconcile

def drain(base_env: dict[str, str], recovery: Path, bars_ports: tuple[int, int], log_dir: Path) -> dict[str, int]:
    """Each consumer run once more from its recovery store to the end of its topic; exit statuses."""
    finishing = {"KAFKA_STOP_AT_END": "true"}
    runs = {name: (command(name), {**base_env, **finishing}) for name in CONSUMERS}
    runs.update(bars_cluster(base_env, recovery, bars_ports, **finishing))
    processes = {}
    for name, (argv, env) in runs.items():
        log = open(log_dir / f"drain-{name.replace('/', '-')}.log", "ab")
        processes[name] = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
        log.close()
    deadline = time.monotonic() + DRAIN_SECONDS
    statuses = {}
    for name, process in processes.items():
        try:
            statuses[name] = process.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            statuses[name] = process.wait()
    return statuses


def _rows_of(settings: Settings, dataset: Dataset) -> list[dict]:
    columns = ["kafka_partition", "kafka_offset", *dataset.identity]
    tables = [""] + ([settings.stock_synthetic_prefix] if dataset.kept_apart_table else [])
    rows = []
    for table in tables:
        try:
            rows += read_delta(settings, dataset.bucket, table).select(columns).to_pylist()
        except Exception as exc:  # noqa: BLE001 - a table not created is empty; any other failure is reported
            if "no log files" not in str(exc).lower() and "not a delta table" not in str(exc).lower():
                raise
    return rows


def reconcile_dataset(settings: Settings, dataset: Dataset, injected_bad: set[tuple[str, int, int]],
                      canary: set[str]) -> dict:
    messages = read_topic(settings, dataset.topic, timeout=300)
    # a row is its identity (partition columns and natural key, `Dataset.identity`), whatever offset it
    # came from: the API producers are at-least-once and may publish a record again, which the lake
    # stores once, from one of the offsets that carried it
    valid, invalid, trade_ids_in_topic = {}, [], set()
    for message in messages:
        place = (message.partition(), message.offset())
        try:
            row = dataset.parse(message.value())
        except InvalidRecord:
            invalid.append(place)
            continue
        valid.setdefault(tuple(row[column] for column in dataset.identity), set()).add(place)
        if canary:
            trade_ids_in_topic.add(row["trade_id"])
    rows = _rows_of(settings, dataset)
    identities = [tuple(row[column] for column in dataset.identity) for row in rows]
    misplaced = [key for key, row in zip(identities, rows)
                 if key in valid and (row["kafka_partition"], row["kafka_offset"]) not in valid[key]]
    letters = read_topic(settings, f"{dataset.topic}.dlq", timeout=120)
    dead = [(int(dict(letter.headers())["dlq.partition"]), int(dict(letter.headers())["dlq.offset"]))
            for letter in letters]
    injected = {(partition, offset) for topic, partition, offset in injected_bad if topic == dataset.topic}
    result = {
        "messages_in_topic": len(messages), "valid": sum(len(places) for places in valid.values()),
        "invalid": len(invalid), "rows": len(rows), "by_identity": deliveries(valid, identities).summary(),
        "rows_from_another_offset": len(misplaced), "rows_from_another_offset_examples": [str(k) for k in misplaced[:5]],
        "published_more_than_once": sum(len(places) - 1 for places in valid.values()),
        "dead_letters": deliveries(invalid, dead).summary(),
        "bad_injected_acknowledged": len(injected),
        "invalid_not_injected": len(set(invalid) - injected),
        "injected_not_in_topic": len(injected - set(invalid)),
    }
    if canary:
        stored_ids = {row["trade_id"] for row in rows}
        result["canary"] = {"acknowledged": len(canary), "missing_from_topic": len(canary - trade_ids_in_topic),
                            "missing_from_table": len(canary - stored_ids)}
    return result


def check_bars(settings: Settings) -> dict:
    """Each bars table against the SQL aggregate of its trades table; a bars table that does not exist is
    right only while its trades table holds no row."""
    options, files = settings.delta_storage_options(), arrow_filesystem(settings)
    prefix = settings.stock_synthetic_prefix
    found = {}
    for trades, bars in ((f"s3://{DATASETS['stock'].bucket}", f"s3://{settings.bars_bucket}"),
                         (f"s3://{DATASETS['stock'].bucket}/{prefix}", f"s3://{settings.bars_bucket}/{prefix}")):
        connection = duckdb.connect()
        connection.register("trades", dataset_of(DeltaTable(trades, storage_options=options), trades, files))
        trade_count = connection.sql("SELECT count(*) FROM trades").fetchall()[0][0]
        try:
            connection.register("bars", dataset_of(DeltaTable(bars, storage_options=options), bars, files))
        except Exception as exc:  # noqa: BLE001 - no such table
            found[bars] = {"readable": trade_count == 0, "trades": trade_count,
                           "error": f"no bars table: {str(exc)[:160]}"}
            continue
        differences = bars_differences(connection, "trades", "bars")
        found[bars] = {"readable": True, "trades": trade_count,
                       "bars": connection.sql("SELECT count(*) FROM bars").fetchall()[0][0],
                       "differences": len(differences), "examples": differences[:5]}
    return found


def check_layout(settings: Settings) -> dict[str, list[str]]:
    filesystem = lake_filesystem(settings)
    buckets = {dataset.bucket: ([f.name for f in dataset.partitioning], settings.stock_synthetic_prefix
                                if dataset.kept_apart_table else "") for dataset in DATASETS.values()}
    buckets[settings.bars_bucket] = ([f.name for f in schemas.BARS_PARTITIONING], settings.stock_synthetic_prefix)
    found = {}
    for bucket, (columns, prefix) in buckets.items():
        keys = [key.split("/", 1)[1] for key in filesystem.find(bucket)] if filesystem.exists(bucket) else []
        found[bucket] = outside_layout(keys, columns, prefix)[:20]
    return found


# ---------------------------------------------------------------- the run

def bad_message_moments(seed: int, seconds: float) -> list[tuple[float, str]]:
    """When each bad message is sent (seconds after the fault phase began) and to which topic: a few per
    topic, spread over the run."""
    rng = random.Random(seed ^ 0xBAD)
    per_topic = max(3, int(seconds // 60))
    return sorted((round(rng.uniform(0, seconds), 1), dataset.topic)
                  for dataset in DATASETS.values() for _ in range(per_topic))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="replays a run's schedule (default: a new one)")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of faults (DURATION)")
    parser.add_argument("--rate", type=float, default=300.0, help="synthetic trades a second, all tickers")
    parser.add_argument("--mean-gap", type=float, default=MEAN_GAP_SECONDS,
                        help="mean seconds between two faults' beginnings (MEAN_GAP; longer: more of them alone)")
    parser.add_argument("--kinds", default="",
                        help="comma-separated fault kinds, the others left out (KINDS; default: every kind)")
    parser.add_argument("--env-file", type=Path, default=REPO / ".stack-cluster" / "env")
    parser.add_argument("--results", type=Path, default=REPO / "chaos" / "results")
    parser.add_argument("--work", type=Path, default=REPO / ".chaos")
    parser.add_argument("--schedule-only", action="store_true", help="print the schedule and stop")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    try:
        env = read_env_file(args.env_file)
        proxy_port = int(env.get("CHAOS_PROXY_PORT") or 19500)
        names = ("minio", "postgres", "fred", "finnhub", "bluesky", *KAFKA_PROXIES)
        targets = Targets(dataflows=(*PRODUCERS, *CONSUMERS, *BARS_CLUSTER, "lake_maintenance"), proxies=names)
        kinds = tuple(kind.strip() for kind in args.kinds.split(",") if kind.strip())
        try:
            faults = build_schedule(seed, args.duration, targets, args.mean_gap, kinds)
        except ValueError as exc:
            raise Refused(f"KINDS: {exc}") from None
        assert not quorum_violations(faults)
        replay = f"make chaos SEED={seed} DURATION={args.duration:g}" + (
            f" MEAN_GAP={args.mean_gap:g}" if args.mean_gap != MEAN_GAP_SECONDS else "") + (
            f" KINDS={','.join(kinds)}" if kinds else "")
        say(f"seed {seed}: {len(faults)} faults over {args.duration:g} s, {overlapping(faults)} begin while "
            f"another is on (replay: {replay})")
        for fault in faults:
            print("   ", fault.describe(), flush=True)
        if args.schedule_only:
            return 0
        settings = settings_from(env)
        check_local(settings)
    except Refused as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    return soak(args, seed, faults, env, settings, proxy_port, names)


def soak(args, seed: int, faults: list[Fault], env: dict[str, str], settings: Settings, proxy_port: int,
         names: tuple[str, ...]) -> int:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = args.work / f"{stamp}-{seed}"
    recovery, logs = work / "recovery", work / "logs"
    stack = Stack(args.env_file, env)
    say("cluster stack up, Toxiproxy up, topics and buckets emptied")
    stack.up()
    stack.toxiproxy("up")
    clean_slate(settings)
    toxiproxy = ToxiproxyAPI(stack.toxiproxy_port)
    toxiproxy.reset()
    tickers = len(load_companies(settings.postgres_connect_kwargs()))
    supervisor = Supervisor(logs, REPO)
    # however the run ends (an error, Ctrl-C, SIGTERM), no dataflow or proxy of it is left behind
    atexit.register(lambda: (supervisor.stop(seconds=10), stack.toxiproxy("down")))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with FakeAPIs() as fakes:
        upstreams = {"minio": settings.s3_endpoint_url.split("//", 1)[1],
                     "postgres": f"127.0.0.1:{settings.postgres_port}", "fred": f"127.0.0.1:{fakes.fred.port}",
                     "finnhub": f"127.0.0.1:{fakes.finnhub.port}", "bluesky": f"127.0.0.1:{fakes.bluesky.port}"}
        ports = {name: proxy_port + index for index, name in enumerate(names)}
        # each broker's proxied listener is advertised at a fixed port (stack/kafka-node-properties.sh)
        proxied, advertised = int(env.get("KAFKA_PROXIED_PORT") or 19200), int(env.get("KAFKA_PROXY_PORT") or 19520)
        for index, name in enumerate(KAFKA_PROXIES):
            upstreams[name], ports[name] = f"127.0.0.1:{proxied + index}", advertised + index
        proxies = {name: toxiproxy.proxy(f"chaos-{name}", upstreams[name], ports[name]) for name in names}
        # the runner's own reads of the store (lag samples) fail over like the dataflows', without toxics
        observer = toxiproxy.proxy("chaos-minio-observer", upstreams["minio"], proxy_port + 9)
        node_2 = f"127.0.0.1:{int(upstreams['minio'].rsplit(':', 1)[1]) + 1}"
        balanced = ([proxies["minio"], observer], upstreams["minio"], node_2)
        base_env = dataflow_env(env, proxies, fakes, recovery, args.rate / tickers)
        bars_ports = (proxy_port + 10, proxy_port + 11)
        for name in (*PRODUCERS, *CONSUMERS, "lake_maintenance"):
            supervisor.add({name: (command(name), base_env)})
        supervisor.add(bars_cluster(base_env, recovery, bars_ports))
        settings.kafka_cluster().ensure_topics([dataset.topic for dataset in DATASETS.values()])
        supervisor.start()
        began = time.monotonic()
        observed = settings.model_copy(update={"s3_endpoint_url": f"https://{observer.address}"})
        sampler = Sampler(observed, work / "samples.jsonl").start(began + WARMUP_SECONDS)
        thresholds = lag_thresholds(settings_from(base_env).bars_allowed_lateness_seconds)
        say(f"load: {args.rate:g} synthetic trades/s over {tickers} tickers, fake APIs, {CANARY_PER_SECOND} "
            f"canary trades/s; warming up {WARMUP_SECONDS:g} s")
        while time.monotonic() - began < WARMUP_SECONDS:
            supervisor.tick()
            time.sleep(0.5)
        injector = Injector(settings, seed, bad_message_moments(seed, args.duration)).start()
        say("faults begin")
        runner = FaultRunner(supervisor, stack, proxies, work / "faults.jsonl", balanced)
        fault_phase = time.monotonic()
        runner.run(faults, fault_phase, supervisor.tick, until=args.duration)
        while time.monotonic() - fault_phase < args.duration:
            supervisor.tick()
            time.sleep(0.5)
        say("faults over: every server up, every toxic removed; load stops")
        runner.settle()
        carried_out = runner.as_carried_out()
        unacknowledged = injector.stop()
        fakes.stop()
        producer_exits = supervisor.stop(PRODUCERS, 60)
        say("waiting for the consumers to catch up (lag under the threshold) before stopping them")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (sampler.samples and sampler.samples[-1].recovered(thresholds)):
            time.sleep(1)
        sampler.stop()
        consumer_exits = supervisor.stop(seconds=90)
    say("draining: each consumer once more to the end of its topic from its recovery store")
    drained = drain(base_env, recovery, bars_ports, logs)
    say(f"drained: {drained}; reconciling")
    datasets = {name: reconcile_dataset(settings, dataset, injector.bad_acked,
                                        injector.canary_acked if name == "stock" else set())
                for name, dataset in DATASETS.items()}
    bars = check_bars(settings)
    layout = check_layout(settings)
    lost = sum(d["by_identity"]["lost"] + d["dead_letters"]["lost"] + d.get("canary", {}).get("missing_from_table", 0)
               + d.get("canary", {}).get("missing_from_topic", 0) for d in datasets.values())
    doubled = sum(d["by_identity"]["doubled"] + d["dead_letters"]["doubled"] for d in datasets.values())
    republished = {name: d["published_more_than_once"] for name, d in datasets.items()}
    wrong = (sum(d["by_identity"]["unexpected"] + d["rows_from_another_offset"] + d["dead_letters"]["unexpected"]
                 + d["invalid_not_injected"]
                 + d["injected_not_in_topic"] for d in datasets.values())
             + sum(b.get("differences", 0) + (0 if b["readable"] else 1) for b in bars.values())
             + sum(len(keys) for keys in layout.values()))
    kinds = Counter(fault.kind for fault in faults)
    report = {
        "seed": seed, "started": stamp, "duration_s": args.duration, "rate_trades_per_s": args.rate,
        "replay": f"make chaos SEED={seed} DURATION={args.duration:g}",
        "faults": {"total": len(faults), "overlapping": overlapping(faults), "by_kind": dict(sorted(kinds.items())),
                   "schedule": [fault.to_json() for fault in faults],
                   "as_carried_out": [fault.to_json() for fault in carried_out], "log": runner.log},
        "restarts_by_supervisor": Counter(name for _, name, _ in supervisor.restarts),
        "messages": {"produced_to_topics": sum(d["messages_in_topic"] for d in datasets.values()),
                     "canary_sent": injector.canary_sent, "canary_acknowledged": len(injector.canary_acked),
                     "canary_unacknowledged_at_end": unacknowledged, "producer_errors": len(injector.failed),
                     "bad_sent": injector.bad_sent, "bad_acknowledged": len(injector.bad_acked),
                     "stored_rows": sum(d["rows"] for d in datasets.values()),
                     "fake_api_records_published": dict(fakes.published)},
        "lost": lost, "doubled": doubled, "other_discrepancies": wrong,
        "published_more_than_once_stored_once": republished,
        "datasets": datasets, "bars": bars, "objects_outside_layout": layout,
        "recovery_after_fault": recovery_by_kind(carried_out, sampler.samples, thresholds),
        "recovery_after_single_fault": recovery_after_single_faults(carried_out, sampler.samples, thresholds),
        "mean_gap_s": args.mean_gap,
        "lag_threshold_s": LAG_THRESHOLD_SECONDS, "lag_thresholds_s": thresholds,
        "peak_rss_mb": {member: round(rss, 1) for member, rss in sorted(supervisor.peaks.items())},
        "producer_exit_statuses": producer_exits, "consumer_exit_statuses": consumer_exits,
        "drain_exit_statuses": drained,
        "samples": [sample.__dict__ for sample in sampler.samples],
    }
    path = args.results / f"{stamp}-{seed}.json"
    write_json(path, report)
    draw(path.with_suffix(".png"), sampler.samples, carried_out,
         f"chaos seed {seed}: {len(faults)} faults in {args.duration:g} s; lost {lost}, doubled {doubled}", thresholds)
    say(f"report: {path} and {path.with_suffix('.png').name}")
    say(f"faults by kind: {dict(sorted(kinds.items()))}")
    say(f"lost {lost}, doubled {doubled}, other discrepancies {wrong}; records the at-least-once producers "
        f"published more than once (each stored once): {republished}; recovery: "
        + json.dumps({k: (v['p50_s'], v['p99_s']) for k, v in report['recovery_after_fault'].items()}))
    single = report["recovery_after_single_fault"]
    say(f"faults that came alone: {single['faults']}, recovered after p50/p99 {single['p50_s']}/{single['p99_s']} s, "
        f"not recovered {single['not_recovered']}")
    return 1 if lost or doubled or wrong or any(drained.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
