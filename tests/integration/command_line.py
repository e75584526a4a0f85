"""Running `marketstream` (`pipelines.cli.main`) in the test's own process against servers of the test's
choosing: the command line reads its settings from the environment once per process, so they are set there
and the loaded settings dropped before and after."""

from __future__ import annotations

import contextlib

import pytest

from marketstream.settings import get_settings


def environment(**settings) -> dict[str, str]:
    """`settings` (names of `marketstream.settings.Settings` fields) as the environment variables they are read from."""
    return {name.upper(): str(value) for name, value in settings.items()}


@contextlib.contextmanager
def command_line_reading(**settings):
    """Within it, `pipelines.cli.main` in this process reads `settings`."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment(**settings).items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        try:
            yield
        finally:
            get_settings.cache_clear()
