"""Graceful stop on SIGTERM / Ctrl-C: the first signal asks every source to end its input, so open
batches are flushed by their end-of-input handling, sinks are closed and, with recovery, the final
state is snapshotted; a second signal stops the process at once."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)
_requested = threading.Event()


def requested() -> bool:
    return _requested.is_set()


def _handle(signum, frame) -> None:
    if _requested.is_set():
        raise KeyboardInterrupt
    _requested.set()
    log.warning("%s received: finishing the current batches before exit (send it again to stop now)",
                signal.Signals(signum).name)


def install() -> None:
    """Install the handlers; only possible from the main thread, where `bytewax.run` imports dataflows."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handle)
        signal.signal(signal.SIGINT, _handle)
