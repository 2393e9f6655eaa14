"""A run's prompt init from token prototypes: a seeded, bounded sample of its training images."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..model import TunedModel


def sample_indices(size: int, count: int, seed: int) -> list[int]:
    """`count` of the indices `0..size-1` (all of them when fewer), drawn with `seed`, in increasing order."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return sorted(order[:count].tolist())


def init_run_prompts(
    model: TunedModel, dataset: Dataset, *, seed: int, batch_size: int, device: torch.device,
    collate: Callable | None = None,
) -> dict[str, Any]:
    """Set `model`'s prompts from the prototypes its `init` option asks for (`model.prompt_init`), on a seeded
    sample of `init_samples` images of `dataset` (the training split, prepared as for evaluation); what was
    done, as the run records it."""
    started = time.time()
    indices = sample_indices(len(dataset), model.prompt_init.samples, seed)
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, collate_fn=collate)
    model.init_prompts((batch[0].to(device) for batch in loader), seed=seed)
    blocks = model.prompt.prototype_target().blocks
    return {"init": model.prompt_init.how, "images": len(indices), "blocks": [block + 1 for block in blocks],
            "seed": seed, "seconds": round(time.time() - started, 2)}
