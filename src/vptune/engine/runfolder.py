"""Who may write a run folder: only a run, only one at a time, never into a folder that is not a run's."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import VptuneError
from .train_state import CHECKPOINT
from .evaluate import TASK_FILE

LOCK = ".lock"
# Files whose presence makes a folder a run folder (config.yaml is written first).
RUN_MARKERS = ("config.yaml", CHECKPOINT, TASK_FILE)


def check_out_folder(run_dir: Path) -> None:
    """Raise VptuneError unless `run_dir` is missing, empty, or a run folder; never writes."""
    if run_dir.exists() and not run_dir.is_dir():
        raise VptuneError(f"--out '{run_dir}' is a file, not a folder; pick a folder for the run")
    if not run_dir.is_dir() or any((run_dir / name).exists() for name in RUN_MARKERS):
        return
    if any(path.name != LOCK for path in run_dir.iterdir()):
        raise VptuneError(f"--out '{run_dir}' holds files but no vptune run; pick a new or empty folder")


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `run_dir` (created if missing) while the block runs.

    The kernel drops the lock when the process ends, even when killed. A folder this call
    created is removed again if the block fails before writing anything into it.
    """
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = (run_dir / LOCK).open("a")
    except OSError as exc:
        raise VptuneError(f"cannot write run folder '{run_dir}': {exc.strerror or exc}; pick another --out") from exc
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise VptuneError(f"run folder '{run_dir}' is being written by another run; wait for it to end "
                              "or pick another --out") from None
        try:
            yield
        except BaseException:
            if created and [p.name for p in run_dir.iterdir()] == [LOCK]:
                (run_dir / LOCK).unlink()
                run_dir.rmdir()
            raise
    finally:
        handle.close()  # closing the file releases the lock
