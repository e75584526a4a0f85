"""What every dataflow module does when `python -m bytewax.run` imports it: set up logging, then build
its flow or stop with one clear line about the configuration problem."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from bytewax.dataflow import Dataflow

from marketstream.settings import ConfigError, get_settings


def configure_logging() -> None:
    try:
        level = get_settings().log_level
    except ConfigError:
        level = "INFO"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("botocore", "aiobotocore", "s3fs", "httpx", "urllib3", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_or_exit(build: Callable[[], Dataflow]) -> Dataflow:
    configure_logging()
    try:
        return build()
    except ConfigError as exc:
        raise SystemExit(f"marketstream: configuration error: {exc}") from None


def lazy_flow(build: Callable[[], Dataflow]) -> Callable[[str], Dataflow]:
    """A module `__getattr__` that builds the module's `flow` when `bytewax.run` asks for it.

    Importing a dataflow module (tests, docs, another dataflow) then has no side effects and needs no
    configuration; only running it does.
    """
    built: list[Dataflow] = []

    def module_getattr(name: str) -> Dataflow:
        if name != "flow":
            raise AttributeError(name)
        if not built:
            built.append(build_or_exit(build))
        return built[0]

    return module_getattr
