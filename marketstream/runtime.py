"""What every dataflow module does when `python -m bytewax.run` imports it: set up logging, then build
its flow or stop with one clear line about the configuration problem."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from bytewax.dataflow import Dataflow

from marketstream import shutdown
from marketstream.settings import ConfigError, get_settings


class RedactingFormatter(logging.Formatter):
    """Replaces every configured secret in a formatted log line (message, arguments and traceback) by ***.

    The modules themselves never log secrets; this is the net under libraries that might."""

    def __init__(self, secrets: list[str], fmt: str):
        super().__init__(fmt)
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def configure_logging() -> None:
    try:
        settings = get_settings()
        level, secrets = settings.log_level, settings.secret_values()
    except ConfigError:
        level, secrets = "INFO", []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets, "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("botocore", "aiobotocore", "s3fs", "httpx", "urllib3", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_or_exit(build: Callable[[], Dataflow]) -> Dataflow:
    configure_logging()
    shutdown.install()
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
