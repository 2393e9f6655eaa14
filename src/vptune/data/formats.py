"""Read the split lists users already have: VTAB-1k txt, FGVC json, class folders.

`load_split(root, task, split)` finds `<root>/<task>` (accepting the usual
aliases of VTAB task folders), detects its layout and returns a `TaskSplit`
of absolute image paths and integer labels.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vptune.errors import DataError

VTAB_SPLITS = ("train800", "val200", "train800val200", "test")
FGVC_SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"})
# VPT's FGVC json paths are relative to the image folder, which is the dataset
# folder for Cars/Flowers, `images/` for CUB/NABirds and `Images/` for Dogs.
FGVC_IMAGE_DIRS = (".", "images", "Images")

# Folder names that different VTAB-1k copies use for the same task (compared
# after `_normalise`).
_ALIAS_GROUPS = (
    ("cifar", "cifar100", "cifar_100"),
    ("caltech101", "caltech_101", "caltech"),
    ("dtd",),
    ("oxford_flowers102", "oxford_flowers", "flowers102", "flowers"),
    ("oxford_iiit_pet", "oxford_pet", "oxford_pets", "pets", "pet"),
    ("svhn",),
    ("sun397", "sun"),
    ("patch_camelyon", "pcam", "camelyon"),
    ("eurosat",),
    ("resisc45", "resisc"),
    ("diabetic_retinopathy", "retinopathy"),
    ("clevr_count", "clevr_count_all"),
    ("clevr_dist", "clevr_distance", "clevr_closest_object_distance"),
    ("dmlab",),
    ("kitti", "kitti_dist", "kitti_distance"),
    ("dsprites_loc", "dsprites_location", "dsprites_x_position"),
    ("dsprites_ori", "dsprites_orientation"),
    ("smallnorb_azi", "smallnorb_azimuth"),
    ("smallnorb_ele", "smallnorb_elevation"),
)


@dataclass
class TaskSplit:
    """One split of one task: absolute image paths with integer labels."""

    samples: list[tuple[Path, int]]
    class_names: list[str]
    num_classes: int
    format: str
    split: str


# A parsed entry: image path relative to its base folder, label, and where it
# came from ("file:line" or "file[key]") for error messages.
Entry = tuple[str, int, str]
# What each layout's loader returns: (absolute path, label) pairs and class names.
Loaded = tuple[list[tuple[Path, int]], list[str]]


def load_split(
    root: str | Path, task: str, split: str, *, val_fraction: float = 0.1, seed: int = 0
) -> TaskSplit:
    """Load `split` of `<root>/<task>` in whichever layout it is stored.

    Layouts: VTAB-1k (`train800.txt` ... lines `images/x.jpg <label>`), FGVC
    (`train.json` ... `{path: class_id}`, `train_<pct>.json` for data-scale
    runs) and class folders (`train/<class>/*.jpg`). Where FGVC or class folders
    have no validation split, a seeded, class-stratified `val_fraction` of
    train becomes `val` and the rest `train`. `a+b` names the union of splits
    `a` and `b` (e.g. `train+val`).

    Raises:
        DataError: missing folder or split, malformed line, bad label, empty split.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} must lie strictly between 0 and 1, e.g. 0.1")
    if "+" in split:
        parts = [load_split(root, task, part, val_fraction=val_fraction, seed=seed) for part in split.split("+")]
        samples = [sample for part in parts for sample in part.samples]
        return TaskSplit(samples, parts[0].class_names, parts[0].num_classes, parts[0].format, split)
    task_dir = resolve_task_dir(root, task)
    fmt = detect_format(task_dir)
    loader = {"vtab": _load_vtab, "fgvc": _load_fgvc, "folders": _load_folders}[fmt]
    samples, class_names = loader(task_dir, split, val_fraction, seed)
    if not samples:
        raise DataError(f"split '{split}' of {task_dir} holds no images; add some or pick another split")
    return TaskSplit(samples, class_names, len(class_names), fmt, split)


def resolve_task_dir(root: str | Path, task: str) -> Path:
    """Return the folder of `task` under `root`, trying known aliases and ignoring case, `-`/`_`."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a folder; pass the folder that holds the task folders")
    if (root / task).is_dir():
        return root / task
    wanted = _alias_group(task)
    matches = sorted(p for p in root.iterdir() if p.is_dir() and _normalise(p.name) in wanted)
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(p.name for p in matches)
        raise DataError(f"task '{task}' matches several folders in {root} ({names}); pass one of them exactly")
    raise DataError(f"no folder for task '{task}' in {root}; it holds: {_listing(root)}")


def detect_format(task_dir: Path) -> str:
    """Name the layout of a task folder: 'vtab', 'fgvc' or 'folders'."""
    if any((task_dir / f"{s}.txt").is_file() for s in VTAB_SPLITS):
        return "vtab"
    if any((task_dir / f"{s}.json").is_file() for s in FGVC_SPLITS):
        return "fgvc"
    if (task_dir / "train").is_dir():
        return "folders"
    raise DataError(
        f"{task_dir} is in no known layout (VTAB-1k train800.txt..., FGVC train.json..., "
        f"or class folders train/<class>/); it holds: {_listing(task_dir)}"
    )


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_")


def canonical_task_name(task: str) -> str:
    """The first name of the VTAB alias group `task` belongs to (`pcam` -> `patch_camelyon`); else `task` normalised."""
    name = _normalise(task)
    return next((group[0] for group in _ALIAS_GROUPS if name in group), name)


def _alias_group(task: str) -> set[str]:
    name = _normalise(task)
    for group in _ALIAS_GROUPS:
        if name in group:
            return set(group)
    return {name}


def _listing(folder: Path, limit: int = 20) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return "nothing"
    extra = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + extra


def _missing_split(task_dir: Path, split: str, available: list[str]) -> DataError:
    return DataError(f"split '{split}' not found in {task_dir}; available splits: {', '.join(sorted(available))}")


# ---------------------------------------------------------------- class names


def _class_names(task_dir: Path, labels: list[Entry]) -> list[str]:
    """Names from `classes.txt` when present, else "0".."max label"; labels checked against them."""
    names_file = task_dir / "classes.txt"
    negative = next((e for e in labels if e[1] < 0), None)
    if negative:
        raise DataError(f"{negative[2]}: label {negative[1]} is negative; class ids must be 0, 1, 2, ...")
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    else:
        names = [str(i) for i in range(max((e[1] for e in labels), default=-1) + 1)]
    too_big = next((e for e in labels if e[1] >= len(names)), None)
    if too_big:
        raise DataError(
            f"{too_big[2]}: label {too_big[1]} is outside [0, {len(names)}) set by {names_file}; "
            "add the missing class names or fix the label"
        )
    return names


# ---------------------------------------------------------------- VTAB-1k


def _load_vtab(task_dir: Path, split: str, val_fraction: float, seed: int) -> Loaded:
    # Only the four VTAB-1k lists: other .txt files (READMEs, label maps) are not splits.
    lists = {s: _read_vtab_list(task_dir / f"{s}.txt") for s in VTAB_SPLITS if (task_dir / f"{s}.txt").is_file()}
    if split not in lists:
        raise _missing_split(task_dir, split, list(lists))
    # Every list counts towards num_classes: a class may appear only in test.
    names = _class_names(task_dir, [e for entries in lists.values() for e in entries])
    return [(task_dir / rel, label) for rel, label, _ in lists[split]], names


def _read_vtab_list(path: Path) -> list[Entry]:
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        # rsplit keeps image paths with spaces intact.
        fields = line.strip().rsplit(maxsplit=1)
        if len(fields) != 2 or not re.fullmatch(r"-?\d+", fields[1]):
            raise DataError(f"{path}:{number}: expected '<image path> <integer label>', got {line.strip()!r}")
        entries.append((fields[0], int(fields[1]), f"{path}:{number}"))
    return entries


# ---------------------------------------------------------------- FGVC json


def _load_fgvc(task_dir: Path, split: str, val_fraction: float, seed: int) -> Loaded:
    annotations = {p.stem: _read_fgvc_json(p) for p in sorted(task_dir.glob("*.json")) if _is_fgvc_split(p.stem)}
    names = _class_names(task_dir, [e for entries in annotations.values() for e in entries])
    carved = "val" not in annotations and "train" in annotations
    available = list(annotations) + (["val"] if carved else [])
    if split not in available:
        raise _missing_split(task_dir, split, available)
    if carved:
        train, val = carve_val(_sorted_pairs(annotations["train"]), len(names), val_fraction, seed)
        if split in ("train", "val"):
            entries = train if split == "train" else val
        else:
            entries = _sorted_pairs(annotations[split])
            if split.startswith("train"):
                # Data-scale subsets (train_<pct>) must not leak the carved val images.
                held_out = {rel for rel, _ in val}
                entries = [e for e in entries if e[0] not in held_out]
    else:
        entries = _sorted_pairs(annotations[split])
    if not entries:
        return [], names
    base = _fgvc_image_dir(task_dir, entries[0][0], split)
    return [(base / rel, label) for rel, label in entries], names


def _is_fgvc_split(stem: str) -> bool:
    # train_<pct> files (train_10, train_0.1) hold the data-scale subsets.
    return stem in FGVC_SPLITS or stem.startswith("train_")


def _read_fgvc_json(path: Path) -> list[Entry]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); expected {{image path: class id}}") from err
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {{image path: class id}}, got {type(data).__name__}")
    entries = []
    for rel, label in data.items():
        # bool is an int subclass; a true/false label is a mistake, not class 1/0.
        if not isinstance(label, int) or isinstance(label, bool):
            raise DataError(f"{path}[{rel!r}]: class id {label!r} is not an integer; use 0-based integer ids")
        entries.append((rel, label, f"{path}[{rel!r}]"))
    return entries


def _sorted_pairs(entries: list[Entry]) -> list[tuple[str, int]]:
    # Sorting makes the seeded carve independent of JSON key order.
    return sorted((rel, label) for rel, label, _ in entries)


def _fgvc_image_dir(task_dir: Path, first_image: str, split: str) -> Path:
    for sub in FGVC_IMAGE_DIRS:
        if (task_dir / sub / first_image).is_file():
            return task_dir / sub  # pathlib drops the "." component
    tried = ", ".join(str(task_dir / sub) for sub in FGVC_IMAGE_DIRS)
    raise DataError(f"image '{first_image}' of split '{split}' not found under {tried}; fix the json paths or images")


# ---------------------------------------------------------------- class folders


def _load_folders(task_dir: Path, split: str, val_fraction: float, seed: int) -> Loaded:
    class_names = sorted(p.name for p in (task_dir / "train").iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_names:
        raise DataError(f"{task_dir / 'train'} has no class folders; expected train/<class name>/<image>")
    index = {name: i for i, name in enumerate(class_names)}
    splits = [p.name for p in task_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    carved = "val" not in splits
    if split not in splits and not (carved and split == "val"):
        raise _missing_split(task_dir, split, splits + (["val"] if carved else []))
    if carved and split in ("train", "val"):
        folder = task_dir / "train"  # the carved val shares train's folder
        train, val = carve_val(_scan_class_folders(folder, index), len(class_names), val_fraction, seed)
        pairs = train if split == "train" else val
    else:
        folder = task_dir / split
        pairs = _scan_class_folders(folder, index)
    return [(folder / rel, label) for rel, label in pairs], class_names


def _scan_class_folders(split_dir: Path, index: dict[str, int]) -> list[tuple[str, int]]:
    pairs = []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if class_dir.name not in index:
            raise DataError(
                f"class folder {class_dir} has no counterpart in train/; rename it or add train/{class_dir.name}/"
            )
        pairs += [
            (f"{class_dir.name}/{f.name}", index[class_dir.name])
            for f in sorted(class_dir.iterdir())
            if f.suffix.lower() in IMAGE_EXTENSIONS
        ]
    return pairs


# ---------------------------------------------------------------- val carve


def carve_val(
    pairs: list[tuple[str, int]], num_classes: int, val_fraction: float, seed: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Split (path, label) pairs into seeded train/val parts, stratified by class.

    Each class gives `round(val_fraction * n)` images to val but always keeps
    at least one in train. Both parts keep the input order.
    """
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, (_, label) in enumerate(pairs):
        by_class[label].append(i)
    val_ids: set[int] = set()
    for label in range(num_classes):
        ids = by_class.get(label, [])
        n_val = min(round(val_fraction * len(ids)), len(ids) - 1)
        if n_val > 0:
            val_ids.update(rng.permutation(ids)[:n_val].tolist())
    train = [p for i, p in enumerate(pairs) if i not in val_ids]
    val = [p for i, p in enumerate(pairs) if i in val_ids]
    return train, val
