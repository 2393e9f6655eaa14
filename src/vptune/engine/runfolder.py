"""Who may write a run folder: only a run, only one at a time, never into a folder that is not a run's.

A run folder is recognised by something only vptune writes: its marker file (`vptune-run.json`,
written before any other file of the run), or, for runs of releases before the marker, a
`config.yaml` that reads as a TrainConfig together with a file only a run writes (its
checkpoint, its per-task file, or an environment.json that names the vptune version). A
folder that merely holds files named `config.yaml` or `metrics.csv` is not a run's.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._version import __version__
from ..errors import VptuneError
from ..files import atomic_write
from .config import TrainConfig, read_yaml
from .train_state import CHECKPOINT

LOCK = ".lock"
MARKER = "vptune-run.json"
CONFIG = "config.yaml"
TASK_FILE = "task.safetensors"
ENVIRONMENT = "environment.json"


def is_run_folder(folder: str | Path) -> bool:
    """Whether `folder` was written by `vptune train` (this release or an earlier one)."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return True
    if not (folder / CONFIG).is_file() or not _written_by_a_run(folder):
        return False
    try:
        TrainConfig.from_dict(read_yaml(folder / CONFIG))
    except VptuneError:
        return False
    return True


def _written_by_a_run(folder: Path) -> bool:
    """Whether `folder` holds a file only a run of an earlier release wrote beside its config.yaml."""
    if (folder / CHECKPOINT).is_file() or (folder / TASK_FILE).is_file():
        return True
    try:
        environment = json.loads((folder / ENVIRONMENT).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(environment, dict) and "vptune" in environment


def mark_run_folder(folder: Path) -> None:
    """Write the marker that makes `folder` a run folder (before the run's other files)."""
    atomic_write(folder / MARKER, json.dumps({"vptune": __version__}) + "\n")


def check_out_folder(run_dir: Path) -> None:
    """Raise VptuneError unless `run_dir` is missing, empty, or a run folder; never writes."""
    if run_dir.exists() and not run_dir.is_dir():
        raise VptuneError(f"--out '{run_dir}' is a file, not a folder; pick a folder for the run")
    if not run_dir.is_dir() or is_run_folder(run_dir):
        return
    if any(path.name != LOCK for path in run_dir.iterdir()):
        raise VptuneError(f"--out '{run_dir}' holds files but no vptune run; pick a new or empty folder")


def require_run_folder(run_dir: str | Path) -> Path:
    """`run_dir` as a Path if it is a run folder; VptuneError saying what it is instead."""
    path = Path(run_dir)
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise VptuneError(f"'{run_dir}' is not a vptune run folder (it {what}); pass a folder `vptune train` wrote")
    if not is_run_folder(path):
        raise VptuneError(f"'{run_dir}' is not a vptune run folder (no {MARKER}, nor a run's {CONFIG} beside its "
                          "checkpoint); pass a folder `vptune train` wrote")
    return path


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
