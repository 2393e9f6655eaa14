"""From a run's configuration to datasets and loaders of its task."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import timm.data
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from ..data import ImageDataset, TaskSplit, build_transform, carve_val, load_split
from ..data.formats import detect_format, resolve_task_dir
from .distributed import Dist

DEFAULT_SPLITS = {"vtab": ("train800", "val200"), "fgvc": ("train", "val"), "folders": ("train", "val")}
# The whole training set once settings are chosen: VTAB-1k's 1000 images, or train and val together.
FULL_TRAIN_SPLITS = {"vtab": "train800val200", "fgvc": "train+val", "folders": "train+val"}


@dataclass(frozen=True)
class InputSpec:
    """How images are turned into model inputs for one run."""

    protocol: str
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def task_format(data: str, task: str) -> str:
    """The layout of `<data>/<task>`: 'vtab', 'fgvc' or 'folders'."""
    return detect_format(resolve_task_dir(data, task))


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


def input_spec(backbone: nn.Module, protocol: str) -> InputSpec:
    """Image size from the backbone, normalisation from its own pretrained config."""
    config = timm.data.resolve_model_data_config(backbone)
    patch_embed = getattr(backbone, "patch_embed", None)
    size = patch_embed.img_size[0] if patch_embed is not None and patch_embed.img_size else config["input_size"][-1]
    return InputSpec(protocol, int(size), tuple(config["mean"]), tuple(config["std"]))


def build_dataset(
    data: str, task: str, split: str, spec: InputSpec, *, train: bool, seed: int, skip_bad_images: bool,
    fraction: float = 1.0,
) -> ImageDataset:
    """The images of one split (or a `fraction` of it, see `load_fraction`), transformed for the model."""
    task_split = load_fraction(data, task, split, fraction, seed)
    transform = build_transform(spec.protocol, spec.img_size, spec.mean, spec.std, train=train)
    return ImageDataset(task_split, transform, cache_images=True, skip_bad_images=skip_bad_images)


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
