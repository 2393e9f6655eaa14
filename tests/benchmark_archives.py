"""Archives in the layouts users download: NOAH's VTAB-1k zip, the VPT FGVC json splits, FGVC image archives.

Split sizes and class counts come from vptune's task table, so a task made here passes the
check unless a test breaks it on purpose. Every image is the same 8x8 PNG: the check decodes
images, it does not look at them. Unless a test asks for one file per image (`distinct`), all
lines of a VTAB split list name the same file: creating and deleting files is what costs time.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from vptune.data.benchmark_tasks import FGVC, VTAB_1K, find_task


@lru_cache(maxsize=None)
def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(192, dtype=np.uint8).reshape(8, 8, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def noah_vtab_files(task: str, folder: str | None = None, *, distinct: bool = False) -> dict[str, bytes]:
    """`vtab-1k/<folder>/...` as NOAH's get_vtab1k.py writes it: lists `images/<split>/NNNNNN.png <label>`."""
    spec = find_task(VTAB_1K, task)
    folder = folder or spec.name
    files = {}
    for split, size in spec.split_sizes.items():
        lines = []
        for i in range(size):
            rel = f"images/{split}/{i if distinct else 0:06d}.png"
            files[f"vtab-1k/{folder}/{rel}"] = png()
            lines.append(f"{rel} {i % spec.num_classes}")
        files[f"vtab-1k/{folder}/{split}.txt"] = ("\n".join(lines) + "\n").encode()
    return files


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def fgvc_splits(task: str, *, first_id: int = 0) -> dict[str, dict[str, int]]:
    """VPT-style json splits for an FGVC task: {split file: {image path: class id}}, ids from `first_id`."""
    spec = find_task(FGVC, task)
    splits, index = {}, 0
    for split, size in spec.split_sizes.items():
        entries = {}
        for _ in range(size):
            label = index % spec.num_classes
            entries[f"{label:03d}.class/image_{index:05d}.jpg"] = first_id + label
            index += 1
        splits[f"{split}.json"] = entries
    return splits


def fgvc_json_files(splits: dict[str, dict[str, int]], folder: str) -> dict[str, bytes]:
    """The splits as the members of a `json.zip`, under `json/<folder>/`."""
    return {f"json/{folder}/{name}": json.dumps(entries).encode() for name, entries in splits.items()}


def fgvc_image_files(splits: dict[str, dict[str, int]], prefix: str) -> dict[str, bytes]:
    """Every image the splits list, under `prefix/` as in the dataset's own archive."""
    return {f"{prefix}/{path}": png() for entries in splits.values() for path in entries}
