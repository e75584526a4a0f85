"""Writing a file the user named, all or nothing.

The bytes go to a hidden temporary file beside the target, which replaces the target only once everything
is written; on any failure the temporary file is removed and a target that existed is left as it was. So
nothing is ever written outside the target's own folder, and no reader sees a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


class UnwritablePath(Exception):
    """The target cannot be written (its folder is missing, it is a folder); the message says which."""


def check_writable(target: Path) -> None:
    """Raise UnwritablePath unless `target` names a file in an existing folder."""
    if target.is_dir():
        raise UnwritablePath(f"{target} is a folder, not a file")
    if not target.resolve().parent.is_dir():
        raise UnwritablePath(f"{target}: its folder {target.parent} does not exist")


@contextlib.contextmanager
def replaced_atomically(target: Path) -> Iterator[BinaryIO]:
    """A binary stream whose bytes become `target` when the block ends without an exception."""
    check_writable(target)
    folder = target.resolve().parent
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
