"""Check a task folder against the benchmark table: split files, sizes, labels, and that every image opens."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from vptune.data.benchmark_tasks import BenchmarkTask
from vptune.data.dataset import load_rgb
from vptune.data.formats import load_split
from vptune.errors import DataError

# How many failing images a problem names before it only counts them.
_EXAMPLES = 2
# Images per unit of work on the thread pool.
_CHUNK = 256


def task_problems(task_dir: str | Path, task: BenchmarkTask, *, show: bool | None = None) -> list[str]:
    """What is wrong with the task folder `task_dir` holding `task`, as short phrases; empty when complete.

    Checks that every split file of the task exists, that each lists the number of images
    the table gives, that labels lie in [0, classes) and together cover every class, and
    that every listed image decodes (fully, as training reads it). `show` draws a progress
    bar over the images (default: when stderr is a terminal).
    """
    task_dir = Path(task_dir)
    missing = [name for name in task.split_files if not (task_dir / name).is_file()]
    if missing:
        return [f"{', '.join(missing)} missing"]
    problems: list[str] = []
    labels: set[int] = set()
    images: set[Path] = set()
    for (split, expected), file in zip(task.split_sizes.items(), task.split_files):
        try:
            samples = load_split(task_dir.parent, task_dir.name, split).samples
        except DataError as exc:
            problems.append(str(exc))
            continue
        if len(samples) != expected:
            problems.append(f"{file} lists {len(samples)} images, expected {expected}")
        labels.update(label for _, label in samples)
        images.update(path for path, _ in samples)
    outside = sorted(label for label in labels if not 0 <= label < task.num_classes)
    if outside:
        problems.append(f"label {outside[-1]} is outside 0..{task.num_classes - 1} ({task.title} has "
                        f"{task.num_classes} classes)")
    elif labels and len(labels) != task.num_classes:
        problems.append(f"the labels cover {len(labels)} of {task.title}'s {task.num_classes} classes")
    broken = _unreadable(sorted(images), task.name, show)
    if broken:
        examples = "; ".join(f"{path} ({reason})" for path, reason in broken[:_EXAMPLES])
        problems.append(f"{len(broken)} of {len(images)} listed images do not open: {examples}")
    # The folder may be a staging folder about to vanish: name files relative to the task.
    return [problem.replace(f"{task_dir}/", "") for problem in problems]


def _unreadable(paths: list[Path], name: str, show: bool | None) -> list[tuple[Path, str]]:
    """The images among `paths` that do not decode, with the reason; decoded in chunks on a thread pool
    (Pillow releases the GIL while it decodes)."""
    show = sys.stderr.isatty() if show is None else show
    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    broken = []
    with ThreadPoolExecutor(min(32, os.cpu_count() or 1)) as pool, \
            tqdm(total=len(paths), desc=f"checking {name}", unit="img", disable=not show) as bar:
        for chunk, reasons in zip(chunks, pool.map(_decode_errors, chunks)):
            broken += [(path, reason) for path, reason in zip(chunk, reasons) if reason is not None]
            bar.update(len(chunk))
    return broken


def _decode_errors(paths: list[Path]) -> list[str | None]:
    return [_decode_error(path) for path in paths]


def _decode_error(path: Path) -> str | None:
    try:
        load_rgb(path)
    except DataError as exc:
        cause = exc.__cause__
        if isinstance(cause, FileNotFoundError):
            return "no such file"
        return f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return None
