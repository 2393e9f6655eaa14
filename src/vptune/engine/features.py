"""Frozen features computed once, for methods that train only the head."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from collections import OrderedDict
from collections.abc import Hashable

from ..model import TunedModel
from .distributed import Dist, gather_tensors
from .loaders import build_loader
from .runinfo import progress


def trains_head_only(model: TunedModel) -> bool:
    """True when a classifier alone trains, so the pooled backbone features never change."""
    if model.reads_blocks:
        return False
    names = model.trainable_parameters()
    return bool(names) and all(name.startswith("head.") for name in names)


# Features by (backbone weights, output, split, transform): sweep trials in one process reuse them.
_CACHE: OrderedDict[Hashable, TensorDataset] = OrderedDict()
_CACHE_ENTRIES = 16


def cached_features(
    model: TunedModel, dataset: Dataset, key: Hashable, device: torch.device, ctx: Dist, *,
    batch_size: int, show: bool, desc: str,
) -> TensorDataset:
    """`extract_features`, computed once per process for the same weights, output and data."""
    full_key = (model.backbone_fingerprint, model.output, ctx.world_size, key)
    if full_key not in _CACHE:
        _CACHE[full_key] = extract_features(model, dataset, device, ctx, batch_size=batch_size, show=show, desc=desc)
        if len(_CACHE) > _CACHE_ENTRIES:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(full_key)
    return _CACHE[full_key]


@torch.no_grad()
def extract_features(
    model: TunedModel, dataset: Dataset, device: torch.device, ctx: Dist, *, batch_size: int, show: bool, desc: str
) -> TensorDataset:
    """`(features, label)` pairs of a whole dataset in its own order, computed once on all ranks together."""
    model.eval()
    features, labels, indices = [], [], []
    loader = build_loader(_Indexed(dataset), batch_size, ctx, shuffle=False, seed=0, epoch=0, num_workers=0)
    for images, (targets, index) in progress(loader, desc, enabled=show):
        features.append(model.embed(images.to(device)).float().cpu())
        labels.append(targets)
        indices.append(index)
    order = gather_tensors(torch.cat(indices), ctx).argsort()
    return TensorDataset(gather_tensors(torch.cat(features), ctx)[order], gather_tensors(torch.cat(labels), ctx)[order])


class _Indexed(Dataset):
    """A dataset whose labels carry the sample index, to restore order after sharding."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return image, (label, index)
