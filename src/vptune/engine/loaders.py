"""From a run's configuration to datasets and loaders of its task."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler, SequentialSampler

from ..data import (ImageDataset, InputSpec, SegDataset, SegTransform, TaskSplit, carve_val, load_seg_split,
                     load_split, seg_collate)
from ..data.formats import detect_format, resolve_task_dir
from ..data.seg_formats import DEFAULT_SEG_SPLITS, SEG_FORMATS, find_seg_layout
from ..errors import DataError, VptuneError
from .distributed import Dist

DEFAULT_SPLITS = {"vtab": ("train800", "val200"), "fgvc": ("train", "val"), "folders": ("train", "val"),
                  **DEFAULT_SEG_SPLITS}
# The whole training set once settings are chosen: VTAB-1k's 1000 images, or train and val together.
FULL_TRAIN_SPLITS = {"vtab": "train800val200", "fgvc": "train+val", "folders": "train+val"}


def task_format(data: str, task: str) -> str:
    """The layout of `<data>/<task>`: 'vtab', 'fgvc', 'folders', or for segmentation 'ade20k', 'voc',
    'cityscapes', 'seg-folders'."""
    task_dir = resolve_task_dir(data, task)
    found = find_seg_layout(task_dir)
    return found[0] if found else detect_format(task_dir)


def is_segmentation(fmt: str) -> bool:
    """Whether a layout (or a protocol named after it) holds segmentation masks."""
    return fmt in SEG_FORMATS


def default_splits(fmt: str) -> tuple[str, str]:
    """(train, validation) split names of a layout."""
    return DEFAULT_SPLITS[fmt]


def full_train_split(fmt: str) -> str:
    """The split a layout's final models train on (tuning and validation images together)."""
    return FULL_TRAIN_SPLITS[fmt]


def load_fraction(data: str, task: str, split: str, fraction: float, seed: int) -> TaskSplit:
    """`split`, or a seeded, class-stratified `fraction` of it (at least one image per class).

    FGVC tasks that ship the subset as `<split>_<pct>.json` (e.g. `train_10.json`) use that file.
    """
    if fraction >= 1.0:
        return load_split(data, task, split, seed=seed)
    task_dir = resolve_task_dir(data, task)
    if detect_format(task_dir) == "fgvc":
        for name in (f"{split}_{fraction * 100:g}", f"{split}_{fraction:g}"):
            if (task_dir / f"{name}.json").is_file():
                return load_split(data, task, name, seed=seed)
    whole = load_split(data, task, split, seed=seed)
    kept, _ = carve_val(whole.samples, whole.num_classes, 1.0 - fraction, seed)
    return dataclasses.replace(whole, samples=kept)


def build_dataset(
    data: str, task: str, split: str, spec: InputSpec, *, train: bool, seed: int, skip_bad_images: bool,
    fraction: float = 1.0,
) -> ImageDataset | SegDataset:
    """The images (and masks) of one split (or a `fraction` of it, see `load_fraction`), transformed for the model.

    Classification caches the resized images; segmentation decodes each pair every epoch, since
    its random resize starts from the full image (an ADE20K or Cityscapes split would not fit in memory).
    """
    if is_segmentation(spec.protocol):
        if skip_bad_images:
            raise DataError("--skip-bad-images applies to classification data; fix or remove the bad image/mask pairs")
        transform = SegTransform(spec.img_size, spec.mean, spec.std, train=train)
        return SegDataset(load_seg_split(data, task, split), transform)
    task_split = load_fraction(data, task, split, fraction, seed)
    return ImageDataset(task_split, spec.transform(train=train), cache_images=True, skip_bad_images=skip_bad_images)


class GlobalOrder(Sampler[int]):
    """One seeded permutation of the whole split; rank `r` of `w` reads its positions r, r + w, r + 2w, ...

    With `batch_size // w` samples per rank, the ranks' k-th batches together are exactly the
    k-th batch of one process reading the permutation with `batch_size`, so torchrun sees the
    same global batches in the same order. The last `len % w` positions are left out (a
    different few each epoch), so every rank reads as many samples, the last partial batch included.
    """

    def __init__(self, size: int, ctx: Dist, seed: int) -> None:
        self.size, self.ctx, self.seed = size, ctx, seed

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed)).tolist()
        usable = self.size - self.size % self.ctx.world_size
        return iter(order[self.ctx.rank:usable:self.ctx.world_size])

    def __len__(self) -> int:
        return self.size // self.ctx.world_size


def build_loader(
    dataset: ImageDataset | SegDataset,
    batch_size: int,
    ctx: Dist,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
    num_workers: int,
) -> DataLoader:
    """A loader whose order depends only on (seed, epoch), so resumed runs repeat it exactly.

    Under torchrun each rank reads its own shard and `batch_size` is split over ranks; shuffled
    (training) loaders give the same global batches as one process (see GlobalOrder).

    Raises:
        VptuneError: a shuffled loader's `batch_size` is not a multiple of the number of processes.
    """
    if shuffle and batch_size % ctx.world_size:
        raise VptuneError(f"--batch-size {batch_size} must be a multiple of the {ctx.world_size} processes, "
                          "so that every process takes an equal share of each batch")
    per_rank = max(1, batch_size // ctx.world_size)
    order_seed = seed * 100_003 + epoch
    if shuffle:
        sampler = GlobalOrder(len(dataset), ctx, order_seed)
    elif ctx.enabled:
        sampler = list(range(ctx.rank, len(dataset), ctx.world_size))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset, batch_size=per_rank, sampler=sampler, num_workers=num_workers,
        generator=torch.Generator().manual_seed(order_seed),
        collate_fn=seg_collate if isinstance(dataset, SegDataset) else None,
    )
