"""atomic_write: a reader sees the old file or the new one, a failed write leaves nothing behind."""

import os

import pytest

from vptune.errors import VptuneError
from vptune.files import atomic_path, atomic_write


def test_atomic_write_replaces_whole_file(tmp_path):
    path = atomic_write(tmp_path / "out.txt", "new")
    assert path.read_text() == "new"
    atomic_write(path, b"bytes")
    assert path.read_bytes() == b"bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failed_block_keeps_old_content_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_unwritable_folder_is_one_error_naming_the_path(tmp_path):
    missing = tmp_path / "no-such-folder" / "out.txt"
    with pytest.raises(VptuneError, match="cannot write '.*no-such-folder/out.txt': No such file or directory"):
        atomic_write(missing, "x")
    if os.geteuid() != 0:  # root writes anywhere
        tmp_path.chmod(0o500)
        try:
            with pytest.raises(VptuneError, match="Permission denied"):
                atomic_write(tmp_path / "out.txt", "x")
        finally:
            tmp_path.chmod(0o700)
