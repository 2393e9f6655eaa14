"""From a run's configuration to datasets and loaders of its task."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from ..data import ImageDataset, InputSpec, load_split
from ..data.formats import detect_format, resolve_task_dir
from .distributed import Dist

DEFAULT_SPLITS = {"vtab": ("train800", "val200"), "fgvc": ("train", "val"), "folders": ("train", "val")}


def task_format(data: str, task: str) -> str:
    """The layout of `<data>/<task>`: 'vtab', 'fgvc' or 'folders'."""
    return detect_format(resolve_task_dir(data, task))


def default_splits(fmt: str) -> tuple[str, str]:
    """(train, validation) split names of a layout."""
    return DEFAULT_SPLITS[fmt]


def build_dataset(
    data: str, task: str, split: str, spec: InputSpec, *, train: bool, seed: int, skip_bad_images: bool
) -> ImageDataset:
    """The images of one split, transformed for the model; decoded images are cached."""
    task_split = load_split(data, task, split, seed=seed)
    return ImageDataset(task_split, spec.transform(train=train), cache_images=True, skip_bad_images=skip_bad_images)


def build_loader(
    dataset: ImageDataset, batch_size: int, ctx: Dist, *, shuffle: bool, seed: int, epoch: int, num_workers: int
) -> DataLoader:
    """A loader whose order depends only on (seed, epoch), so resumed runs repeat it exactly.

    Under torchrun each rank reads its own shard and `batch_size` is split over ranks.
    """
    per_rank = max(1, batch_size // ctx.world_size)
    if ctx.enabled and shuffle:
        sampler = DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
    elif ctx.enabled:
        sampler = list(range(ctx.rank, len(dataset), ctx.world_size))
    elif shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset, batch_size=per_rank, sampler=sampler, num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed * 100_003 + epoch),
    )
