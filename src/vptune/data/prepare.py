"""Write offline tasks to disk in the layouts users' own copies have.

`prepare_task(name, out_root)` writes `<out_root>/<name>/`: classification
tasks in VTAB-1k layout (`{train800,val200,train800val200,test}.txt`,
`classes.txt`, `images/{train800,val200,test}/NNNNNN.png`), segmentation
tasks as folder pairs (`images/<split>/NNNNNN.png`, `masks/<split>/NNNNNN.png`,
`classes.txt`, splits train/val/test).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from vptune.data import real_tasks, synthetic_tasks
from vptune.data.taskdata import PARTS, TaskArrays
from vptune.errors import DataError
from vptune.segmentation import scenes
from vptune.segmentation.scenes import SEG_SPLITS, SegArrays

TaskMaker = Callable[[np.random.Generator, int | None], TaskArrays | SegArrays]

_TASKS: dict[str, TaskMaker] = {
    "fashion-mnist": real_tasks.fashion_mnist,
    "digits": real_tasks.digits,
    "dsprites-location": synthetic_tasks.dsprites_location,
    "dsprites-orientation": synthetic_tasks.dsprites_orientation,
    "shapes-count": synthetic_tasks.shapes_count,
    "shapes-distance": synthetic_tasks.shapes_distance,
    "fashion-scenes": scenes.fashion_scenes,
    "shapes-seg": scenes.shapes_seg,
}
_SPLIT_FILES = ("train800", "val200", "train800val200", "test", "classes")


def available_tasks() -> list[str]:
    """Names accepted by `prepare_task`."""
    return sorted(_TASKS)


def prepare_task(
    name: str, out_root: str | Path, *, seed: int = 0, n_test: int | None = None, overwrite: bool = False
) -> Path:
    """Generate task `name` into `<out_root>/<name>` in VTAB-1k layout and return that folder.

    The output is identical for the same seed. `n_test` defaults to 1000
    (digits: the 797 images not used for training; segmentation tasks: 500).

    Raises:
        DataError: unknown name, missing source data, bad `n_test` or `seed`, an
            existing non-empty folder without `overwrite=True`, or a root that cannot be written.
    """
    if name not in _TASKS:
        raise DataError(f"unknown offline task '{name}'; available: {', '.join(available_tasks())}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise DataError(f"seed must be a whole number in [0, 2**32), got {seed!r}")
    root = Path(out_root).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise DataError(f"data root '{root}' is a file, not a folder; pick a folder")
    task_dir = root / name
    if task_dir.is_dir() and any(task_dir.iterdir()):
        if not overwrite:
            raise DataError(f"{task_dir} already exists and is not empty; delete it or pass overwrite=True")
        _remove_outputs(task_dir)
    arrays = _TASKS[name](np.random.default_rng(seed), n_test)
    try:
        if isinstance(arrays, SegArrays):
            _write_seg_pairs(task_dir, arrays, desc=name)
        else:
            _write_vtab(task_dir, arrays, desc=name)
    except OSError as exc:
        raise DataError(f"cannot write {task_dir}: {exc.strerror or exc}; pick another data root") from exc
    return task_dir


def _remove_outputs(task_dir: Path) -> None:
    # Only what prepare_task writes, never other files the user keeps there.
    for stem in _SPLIT_FILES:
        (task_dir / f"{stem}.txt").unlink(missing_ok=True)
    for part in PARTS + SEG_SPLITS:
        shutil.rmtree(task_dir / "images" / part, ignore_errors=True)
    for split in SEG_SPLITS:
        shutil.rmtree(task_dir / "masks" / split, ignore_errors=True)


def _progress(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=f"writing {desc}", unit="img", disable=not sys.stderr.isatty())


def _write_vtab(task_dir: Path, arrays: TaskArrays, desc: str) -> None:
    lines: dict[str, list[str]] = {}
    total = sum(len(labels) for _, labels in arrays.parts.values())
    with _progress(total, desc) as progress:
        for part in PARTS:
            images, labels = arrays.parts[part]
            (task_dir / "images" / part).mkdir(parents=True, exist_ok=True)
            lines[part] = []
            for i, (image, label) in enumerate(zip(images, labels)):
                rel = f"images/{part}/{i:06d}.png"
                Image.fromarray(image).save(task_dir / rel)
                lines[part].append(f"{rel} {int(label)}")
                progress.update()
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, split_lines in lines.items():
        (task_dir / f"{split}.txt").write_text("\n".join(split_lines) + "\n")
    (task_dir / "classes.txt").write_text("\n".join(arrays.class_names) + "\n")


def _write_seg_pairs(task_dir: Path, arrays: SegArrays, desc: str) -> None:
    total = sum(len(masks) for _, masks in arrays.parts.values())
    with _progress(total, desc) as progress:
        for split, (images, masks) in arrays.parts.items():
            for kind in ("images", "masks"):
                (task_dir / kind / split).mkdir(parents=True, exist_ok=True)
            for i, (image, mask) in enumerate(zip(images, masks)):
                Image.fromarray(image).save(task_dir / "images" / split / f"{i:06d}.png")
                Image.fromarray(mask).save(task_dir / "masks" / split / f"{i:06d}.png")
                progress.update()
    (task_dir / "classes.txt").write_text("\n".join(arrays.class_names) + "\n")
