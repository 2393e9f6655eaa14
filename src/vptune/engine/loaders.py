"""From a run's configuration to datasets and loaders of its task."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from ..data import InputSpec
from ..errors import VptuneError
from ..tasks import task_type_of
from .distributed import Dist


def build_dataset(
    data: str, task: str, split: str, spec: InputSpec, *, train: bool, seed: int, skip_bad_images: bool,
    fraction: float = 1.0,
) -> Dataset:
    """One split (or a seeded `fraction` of it) of the task folder `<data>/<task>`, transformed for the model,
    as the folder's task type builds it (see `TaskType.dataset`)."""
    kind, _ = task_type_of(data, task)
    return kind.dataset(data, task, split, spec, train=train, seed=seed, skip_bad_images=skip_bad_images,
                        fraction=fraction)


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
    dataset: Dataset,
    batch_size: int,
    ctx: Dist,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
    num_workers: int,
    collate: Callable | None = None,
) -> DataLoader:
    """A loader whose order depends only on (seed, epoch), so resumed runs repeat it exactly.

    `collate` makes batches of the dataset's samples (None: torch's default, stacking them).

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
        collate_fn=collate,
    )
