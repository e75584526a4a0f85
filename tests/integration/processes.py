"""Processes the integration tests start: logged to a file, killed when the test ends."""

import subprocess
import tempfile

_STARTED: list[subprocess.Popen] = []


def logged(command: list[str], **kwargs) -> subprocess.Popen:
    """Start `command` with its log in a file: a pipe nobody reads while the test waits would fill and
    block the process. It is killed when the test ends, however the test ends (the `kill_leftover_processes` fixture)."""
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, **kwargs)
    process.log = log
    _STARTED.append(process)
    return process


def kill_leftovers() -> list[list[str]]:
    """Kill what `logged` started and is still running (a test that failed mid-way leaves a stalled
    consumer behind, which would go on writing into the next tests' topics and buckets); their commands."""
    killed = []
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait(10)
            killed.append(process.args)
    return killed
