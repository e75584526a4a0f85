"""Graceful stop on SIGTERM / Ctrl-C: the first signal asks every source to end its input, so open
batches are flushed by their end-of-input handling, sinks are closed and, with recovery, the final
state is snapshotted; a second signal stops the process at once.

The stop is bounded: if the process has not finished `SHUTDOWN_TIMEOUT_SECONDS` after the first signal
(the object store or Kafka is down, say, and writes are being retried), it exits with status 3 at once.
No snapshot is taken then, so neither recovery state nor the lake moves past what is stored: a restart
reads the unfinished messages again."""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)
_requested = threading.Event()
_timeout_seconds = 60.0
TIMED_OUT_STATUS = 3


def requested() -> bool:
    return _requested.is_set()


def wait(seconds: float) -> bool:
    """Sleep up to `seconds`; True if a stop was requested meanwhile."""
    return _requested.wait(seconds)


def _give_up_after(seconds: float) -> None:
    if threading.main_thread().join(seconds) is None and threading.main_thread().is_alive():
        log.error("still not stopped %.0f s after the signal (SHUTDOWN_TIMEOUT_SECONDS): exiting without storing "
                  "what is in flight; it is read again on restart", seconds)
        logging.shutdown()
        os._exit(TIMED_OUT_STATUS)


def _handle(signum, frame) -> None:
    if _requested.is_set():
        raise KeyboardInterrupt
    _requested.set()
    threading.Thread(target=_give_up_after, args=(_timeout_seconds,), name="shutdown-timeout", daemon=True).start()
    log.warning("%s received: finishing the current batches before exit, for at most %.0f s (send it again to "
                "stop now)", signal.Signals(signum).name, _timeout_seconds)


def install(timeout_seconds: float = 60.0) -> None:
    """Install the handlers; only possible from the main thread, where `bytewax.run` imports dataflows."""
    global _timeout_seconds
    _timeout_seconds = timeout_seconds
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handle)
        signal.signal(signal.SIGINT, _handle)
