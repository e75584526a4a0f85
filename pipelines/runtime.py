"""What every dataflow module's `flow()` does when `python -m bytewax.run` calls it: set up logging, build
the flow (or stop with one clear line about the configuration problem), then wait for the servers it needs.
A process of a Bytewax cluster (`-i`/`-a`) whose peer is lost exits with one line saying so and status 4
(`PEER_LOST_STATUS`), rather than with Bytewax's traceback, so that a supervisor restarts it and the whole
cluster resumes from its recovery store.

The modules follow Bytewax's own convention: `bytewax.run dataflows.<name>` finds the module's `flow` and,
as it is a function, calls it. Importing a dataflow module (tests, docs, another dataflow) therefore has no
side effects and needs no configuration; only running it does."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping

from bytewax.dataflow import Dataflow

from marketstream import preflight, shutdown
from marketstream.memory import exempt_startup_objects_from_collection
from marketstream.settings import ConfigError, Settings, get_settings

PRODUCER_NEEDS = ("kafka",)
COMPANIES_PRODUCER_NEEDS = ("kafka", "postgres")


THROTTLED_LOGGERS = ("librdkafka", "sources.kafka_topic")
"""Loggers that report each failed poll or connection attempt while a broker is down."""


def consumer_needs(bucket: str) -> tuple:
    """What a consumer waits for and checks before it starts: Kafka, and the object store answering with a
    bucket in the lake format it writes (or none yet)."""
    return ("kafka", preflight.lake_format_of(bucket))


class RedactingFormatter(logging.Formatter):
    """Replaces every configured secret in a log line's message, arguments and traceback by ***.

    The modules themselves never log secrets; this is the net under libraries that might. Logger names and
    the line's other fields are left alone, so a secret that happens to be a common word cannot mangle them
    (secrets should not be common words: the defaults are not)."""

    def __init__(self, secrets: list[str], fmt: str):
        super().__init__(fmt)
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def format(self, record: logging.LogRecord) -> str:
        if not self._secrets:
            return super().format(record)
        record = logging.makeLogRecord(record.__dict__)  # a copy: other handlers see the original
        record.msg, record.args = self._redact(record.getMessage()), None
        if record.exc_info:
            record.exc_text = self._redact(self.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        return super().format(record)


class RepeatFilter(logging.Filter):
    """Lets a warning or error through at most once per `interval` seconds per logger and text (digits
    aside); the next one let through says how many were held back. A broker that is down makes librdkafka
    report the same failure many times a second."""

    def __init__(self, interval: float = 30.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, re.sub(r"\d+", "#", record.getMessage()))
        now = self._clock()
        with self._lock:
            if len(self._last) > 10_000:
                self._last.clear()
            last, held = self._last.get(key, (None, 0))
            if last is not None and now - last < self._interval:
                self._last[key] = (last, held + 1)
                return False
            self._last[key] = (now, 0)
        if held:
            record.msg, record.args = f"{record.getMessage()} ({held} more like it in the last {self._interval:.0f} s)", None
        return True


def configure_logging(settings: Settings | None = None) -> None:
    try:
        settings = settings or get_settings()
        level, secrets = settings.log_level, settings.secret_values()
    except ConfigError:
        level, secrets = "INFO", []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets, "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for repetitive in THROTTLED_LOGGERS:
        logger = logging.getLogger(repetitive)
        for old in [f for f in logger.filters if isinstance(f, RepeatFilter)]:
            logger.removeFilter(old)
        logger.addFilter(RepeatFilter())
    for noisy in ("botocore", "aiobotocore", "s3fs", "httpx", "urllib3", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


METRICS_PORTS_TRIED = 64


def serve_metrics(flow_id: str, port: int, address: str) -> int:
    """Serve this process's Prometheus metrics (`marketstream.metrics`) on the first free port from
    `port`: the processes of `bytewax.run -p N` on one host each take the next one. Returns the port."""
    from prometheus_client import start_http_server

    from marketstream import metrics

    metrics.DATAFLOW.info({"flow": flow_id})
    for candidate in range(port, port + METRICS_PORTS_TRIED):
        try:
            start_http_server(candidate, addr=address)
        except OSError:
            continue
        logging.getLogger(__name__).info("metrics: http://%s:%d/metrics", address, candidate)
        return candidate
    raise ConfigError(f"METRICS_PORT: no free port in {port}..{port + METRICS_PORTS_TRIED - 1}")


PEER_LOST_STATUS = 4
LOST_PEER_SIGNS = ("Send thread panic", "Recv thread panic", "timely communication error", "MergeQueue poisoned")
"""What Bytewax's cluster_main raises (a pyo3 PanicException) when a connection to another process of the
cluster breaks: timely's network threads panic on a closed or failed socket and the workers follow."""


def cluster_place(bytewax_args: list[str], environ: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """(this process's index, the number of processes) when `bytewax_args` (or Bytewax's environment
    variables) make this process one of a cluster (`-i N -a "host:port;host:port"`), else None."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-i", "--process-id", type=int, default=environ.get("BYTEWAX_PROCESS_ID"))
    parser.add_argument("-a", "--addresses", default=environ.get("BYTEWAX_ADDRESSES"))
    known, _ = parser.parse_known_args(bytewax_args)
    if known.process_id is None or not known.addresses:
        return None
    return int(known.process_id), len([a for a in known.addresses.split(";") if a.strip()])


def lost_peer_line(error: BaseException, place: tuple[int, int] | None) -> str | None:
    """The one line a cluster process ends with when `error` says a peer was lost; None for other errors."""
    text = f"{type(error).__name__}: {error}"
    if not any(sign in text for sign in LOST_PEER_SIGNS):
        return None
    who = f"process {place[0]} of {place[1]}" if place else "this process"
    return (f"cluster: {who} lost its connection to another process of the cluster (it died or the network "
            f"between them failed: {text[:200]}); exiting with status {PEER_LOST_STATUS} so that the whole cluster "
            "restarts from its recovery store")


def exit_clearly_when_a_peer_is_lost(place: tuple[int, int] | None) -> None:
    """From now on, an error that ends the process because a peer of its cluster was lost is reported with
    `lost_peer_line` and exit status `PEER_LOST_STATUS`; any other error as before."""
    previous = sys.excepthook

    def hook(kind, error, traceback) -> None:
        line = lost_peer_line(error, place)
        if line is None:
            previous(kind, error, traceback)
            return
        logging.getLogger(__name__).error(line)
        logging.shutdown()
        os._exit(PEER_LOST_STATUS)

    sys.excepthook = hook


def build_or_exit(build: Callable[[Settings], Dataflow], needs: tuple, settings: Settings | None = None) -> Dataflow:
    """Build the flow with `settings` (default: the environment's), then wait for the servers it `needs`
    (`marketstream.preflight`); what is alive then is left out of the garbage collector's passes
    (`marketstream.memory`). A configuration problem ends the process with one line naming the setting."""
    configure_logging(settings)
    try:
        settings = settings or get_settings()
        shutdown.install(settings.shutdown_timeout_seconds)
        exit_clearly_when_a_peer_is_lost(cluster_place(sys.argv[1:]))
        flow = build(settings)
        preflight.wait_for(settings, needs)
        if settings.metrics_port:
            serve_metrics(flow.flow_id, settings.metrics_port, settings.metrics_address)
        exempt_startup_objects_from_collection()
        return flow
    except ConfigError as exc:
        raise SystemExit(f"marketstream: configuration error: {exc}") from None
