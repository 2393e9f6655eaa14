"""torchrun support: process group set-up, rank queries and metric reduction."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> Dist:
    """Join the process group that torchrun describes in the environment (no-op otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def gather_tensors(tensor: torch.Tensor, ctx: Dist) -> torch.Tensor:
    """Concatenate a tensor of possibly different lengths from every rank (rank order)."""
    if not ctx.enabled:
        return tensor
    parts: list[torch.Tensor] = [None] * ctx.world_size  # type: ignore[list-item]
    dist.all_gather_object(parts, tensor.cpu())
    return torch.cat(parts)


def is_main_process() -> bool:
    """True outside torchrun and on its rank 0: the process that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def broadcast_flag(flag: bool, ctx: Dist) -> bool:
    """True on every rank when any rank says True (used to stop all ranks together)."""
    if not ctx.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def sum_over_ranks(values: list[float], ctx: Dist) -> list[float]:
    """Element-wise sums of `values` over all ranks (e.g. loss sums and sample counts)."""
    if not ctx.enabled:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return total.tolist()


def _collective_device() -> torch.device:
    # NCCL reduces only CUDA tensors; gloo only CPU ones.
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sync_batch_norm(module: torch.nn.Module, ctx: Dist, device: torch.device) -> torch.nn.Module:
    """`module` with its BatchNorm layers as SyncBatchNorm when several ranks train on CUDA.

    Batch statistics then span the global batch, as mmsegmentation trains SETR's decoders.
    The parameters and buffers are the same tensors. Elsewhere `module` comes back unchanged:
    torch's SyncBatchNorm runs only on GPUs, so CPU ranks (gloo) normalise their own batches.
    """
    if not (ctx.enabled and device.type == "cuda"):
        return module
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
