"""Read segmentation datasets in the layouts they ship in: ADE20K, Pascal VOC 2012, Cityscapes, folder pairs.

`load_seg_split(root, task, split)` finds `<root>/<task>`, detects its layout
and returns a `SegSplit` of (image, mask) paths with the class names. Masks
hold one class id per pixel; `IGNORE_INDEX` (255) marks pixels that count
neither in the loss nor in the metrics. `load_pair` decodes one sample and
checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.dataset import load_rgb
from ..data.formats import IMAGE_EXTENSIONS, resolve_task_dir
from ..data.transforms import SEG_PROTOCOLS
from ..errors import DataError
from .classes import ADE20K_CLASSES, CITYSCAPES_CLASSES, VOC_CLASSES

IGNORE_INDEX = 255
SEG_FORMATS = SEG_PROTOCOLS
# (train, validation) split names of each layout.
DEFAULT_SEG_SPLITS = {fmt: ("training", "validation") if fmt == "ade20k" else ("train", "val") for fmt in SEG_FORMATS}
_ADE_SPLIT_ALIASES = {"train": "training", "val": "validation"}
_MASK_MODES = frozenset({"L", "P", "I", "I;16"})


@dataclass
class SegSplit:
    """One split of a segmentation task: absolute (image, mask) paths and the class names.

    `reduce_zero_label` (ADE20K): mask value 0 is ignored and values 1..C become 0..C-1.
    """

    samples: list[tuple[Path, Path]]
    class_names: list[str]
    format: str
    split: str
    reduce_zero_label: bool = False
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_seg_split(root: str | Path, task: str, split: str) -> SegSplit:
    """Load `split` of the segmentation task `<root>/<task>` in whichever layout it is stored.

    Layouts: ADE20K (`ADEChallengeData2016/{images,annotations}/{training,validation}`;
    `train`/`val` are accepted), Pascal VOC 2012 (`VOCdevkit/VOC2012/` with
    `ImageSets/Segmentation/<split>.txt`), Cityscapes (`leftImg8bit/<split>/<city>/`
    with `gtFine/..._gtFine_labelTrainIds.png`) and folder pairs
    (`images/<split>/*`, `masks/<split>/<stem>.png`, `classes.txt`).

    Raises:
        DataError: unknown layout, missing split, missing mask or classes.txt, empty split.
    """
    found = find_seg_layout(resolve_task_dir(root, task))
    if found is None:
        raise DataError(
            f"{resolve_task_dir(root, task)} is in no segmentation layout (ADEChallengeData2016/, VOCdevkit/VOC2012/, "
            "leftImg8bit/ + gtFine/, or images/ + masks/ + classes.txt)"
        )
    fmt, folder = found
    samples, names, split = _LOADERS[fmt](folder, split)
    if not samples:
        raise DataError(f"split '{split}' of {folder} holds no images; add some or pick another split")
    return SegSplit(samples, names, fmt, split, reduce_zero_label=fmt == "ade20k")


def find_seg_layout(task_dir: Path) -> tuple[str, Path] | None:
    """(format, dataset folder) of a segmentation task folder, or None when it is no segmentation layout."""
    for folder in (task_dir, task_dir / "ADEChallengeData2016"):
        if (folder / "images").is_dir() and (folder / "annotations").is_dir():
            return "ade20k", folder
    for folder in (task_dir, task_dir / "VOC2012", task_dir / "VOCdevkit" / "VOC2012"):
        if (folder / "JPEGImages").is_dir() and (folder / "SegmentationClass").is_dir():
            return "voc", folder
    if (task_dir / "leftImg8bit").is_dir() and (task_dir / "gtFine").is_dir():
        return "cityscapes", task_dir
    if (task_dir / "images").is_dir() and (task_dir / "masks").is_dir():
        return "seg-folders", task_dir
    return None


def load_pair(image_path: Path, mask_path: Path, split: SegSplit) -> tuple[Image.Image, np.ndarray]:
    """Decode one sample: the RGB image and its (H, W) uint8 mask of class ids and `IGNORE_INDEX`.

    Raises:
        DataError: unreadable files, a colour mask, sizes that differ, or a label outside the classes.
    """
    image = load_rgb(image_path)
    mask = read_mask(mask_path, split)
    if image.size != (mask.shape[1], mask.shape[0]):
        raise DataError(
            f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {image_path} is "
            f"{image.size[0]}x{image.size[1]}; masks must have their image's size"
        )
    return image, mask


def read_mask(path: Path, split: SegSplit) -> np.ndarray:
    """A mask file as (H, W) uint8 class ids, zero label reduced where the layout asks for it."""
    try:
        with Image.open(path) as file:
            mode = file.mode
            raw = np.asarray(file).astype(np.int64)
    except FileNotFoundError as err:
        raise DataError(f"mask {path} does not exist; add it or remove its image from the split") from err
    except Exception as err:  # Pillow reports damaged files with many exception types
        raise DataError(f"mask {path} cannot be decoded ({type(err).__name__}: {err}); replace it") from err
    if mode not in _MASK_MODES:
        raise DataError(
            f"mask {path} is a {mode} image; save class ids as a single-channel (L or P) PNG, "
            f"{split.ignore_index} = ignore"
        )
    first = 1 if split.reduce_zero_label else 0
    last = split.num_classes - 1 + first
    labels = np.unique(raw)
    bad = labels[((labels < first) | (labels > last)) & (labels != split.ignore_index)]
    if split.reduce_zero_label:
        bad = bad[bad != 0]  # 0 is "other", ignored
    if len(bad):
        raise DataError(
            f"mask {path}: label {int(bad[0])} is outside the classes {first}..{last} "
            f"({split.ignore_index} = ignore); fix the mask or the class list"
        )
    if split.reduce_zero_label:
        raw = np.where((raw == 0) | (raw == split.ignore_index), split.ignore_index, raw - 1)
    return raw.astype(np.uint8)


# ---------------------------------------------------------------- layouts

Loaded = tuple[list[tuple[Path, Path]], list[str], str]


def _load_ade20k(folder: Path, split: str) -> Loaded:
    split = _ADE_SPLIT_ALIASES.get(split, split)
    images = _split_dir(folder / "images", split)
    pairs = _pair_by_stem(_image_files(images), lambda img: folder / "annotations" / split / f"{img.stem}.png")
    return pairs, list(ADE20K_CLASSES), split


def _load_voc(folder: Path, split: str) -> Loaded:
    lists = folder / "ImageSets" / "Segmentation"
    available = sorted(p.stem for p in lists.glob("*.txt"))
    if split not in available:
        raise _missing_split(lists, split, available)
    ids = [line.strip() for line in (lists / f"{split}.txt").read_text().splitlines() if line.strip()]
    images = [folder / "JPEGImages" / f"{name}.jpg" for name in ids]
    missing = next((p for p in images if not p.is_file()), None)
    if missing:
        raise DataError(
            f"image {missing} listed in {lists / f'{split}.txt'} does not exist; fix the list or the images"
        )
    pairs = _pair_by_stem(images, lambda img: folder / "SegmentationClass" / f"{img.stem}.png")
    return pairs, list(VOC_CLASSES), split


def _load_cityscapes(folder: Path, split: str) -> Loaded:
    images = sorted(_split_dir(folder / "leftImg8bit", split).glob("*/*_leftImg8bit.png"))

    def mask_of(image: Path) -> Path:
        stem = image.name.removesuffix("_leftImg8bit.png")
        return folder / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelTrainIds.png"

    return _pair_by_stem(images, mask_of), list(CITYSCAPES_CLASSES), split


def _load_seg_folders(folder: Path, split: str) -> Loaded:
    names_file = folder / "classes.txt"
    if not names_file.is_file():
        raise DataError(f"{names_file} is missing; list the class names there, one per line, in label order")
    names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    if not 0 < len(names) <= IGNORE_INDEX:
        raise DataError(f"{names_file} lists {len(names)} classes; a mask holds 1..{IGNORE_INDEX} classes")
    images = _image_files(_split_dir(folder / "images", split))
    return _pair_by_stem(images, lambda img: folder / "masks" / split / f"{img.stem}.png"), names, split


_LOADERS: dict[str, Callable[[Path, str], Loaded]] = {
    "ade20k": _load_ade20k,
    "voc": _load_voc,
    "cityscapes": _load_cityscapes,
    "seg-folders": _load_seg_folders,
}


def _split_dir(parent: Path, split: str) -> Path:
    if not (parent / split).is_dir():
        available = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        raise _missing_split(parent, split, available)
    return parent / split


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _pair_by_stem(images: list[Path], mask_of: Callable[[Path], Path]) -> list[tuple[Path, Path]]:
    pairs = [(image, mask_of(image)) for image in images]
    missing = next((pair for pair in pairs if not pair[1].is_file()), None)
    if missing:
        raise DataError(f"image {missing[0]} has no mask (expected {missing[1]}); add the mask or remove the image")
    return pairs


def _missing_split(folder: Path, split: str, available: list[str]) -> DataError:
    return DataError(f"split '{split}' not found in {folder}; available splits: {', '.join(available) or 'none'}")
