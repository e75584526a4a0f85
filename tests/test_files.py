"""Writing a file the user named: all of it or, on any failure, nothing, and only there."""

import os

import pytest

from pipelines.files import UnwritablePath, check_writable, replaced_atomically


def test_the_bytes_become_the_file_once_all_are_written(tmp_path):
    target = tmp_path / "out.csv"
    with replaced_atomically(target) as stream:
        stream.write(b"a,b\n")
        assert not target.exists()  # no reader sees a half-written file
    assert target.read_bytes() == b"a,b\n" and os.listdir(tmp_path) == ["out.csv"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def test_a_failure_leaves_the_former_file_as_it_was_and_nothing_beside_it(tmp_path):
    target = tmp_path / "out.csv"
    target.write_bytes(b"before")
    with pytest.raises(RuntimeError):
        with replaced_atomically(target) as stream:
            stream.write(b"half")
            raise RuntimeError("the query failed")
    assert target.read_bytes() == b"before" and os.listdir(tmp_path) == ["out.csv"]


def test_a_folder_or_a_missing_folder_is_no_file_to_write(tmp_path):
    with pytest.raises(UnwritablePath, match="is a folder"):
        check_writable(tmp_path)
    with pytest.raises(UnwritablePath, match="does not exist"):
        check_writable(tmp_path / "missing" / "out.csv")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
