"""Prompt initialisation from token prototypes (SPT, Wang et al., ICML 2024).

A prompt of `p` tokens for a block starts at `p` prototypes of the patch tokens that enter
that block when a sample of the task's training images runs through the frozen backbone
without prompts (block 1: patch embedding, position embedding and pre-norm, as the prompts
sit beside them; block i > 1: the outputs of block i - 1). Prefix tokens ([CLS], registers)
are left out. `uniform` keeps VPT's own init. The ways (`PROMPT_INITS`):

- `mean-pool` / `max-pool`: each image's `L` patch tokens are split, in sequence order, into
  `p` contiguous windows of near-equal length (`torch.tensor_split`) and pooled per window,
  giving `N * p` pooled tokens for `N` images; the prompts are `p` of them drawn without
  replacement (the first `p` of a seeded `randperm`).
- `kmeans`: the `N * L` patch tokens are clustered into `p` clusters (k-means++ seeding,
  then Lloyd's iterations as scikit-learn's `KMeans` stops them, with `tol=KMEANS_TOL` and
  at most `KMEANS_MAX_ITER` rounds); the prompts are the cluster centres.

Every draw comes from `block_generator(seed, block)`, so the prompts repeat for a seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import MethodError
from .vit import PrototypeTarget, stem_tokens

PROMPT_INITS = ("uniform", "mean-pool", "max-pool", "kmeans")
DEFAULT_INIT_SAMPLES = 64
KMEANS_MAX_ITER = 100
KMEANS_TOL = 1e-4


def init_option() -> Any:
    """The `init` field of a prompt method's Options (one line in a new method's Options)."""
    return field(default="uniform", metadata={
        "help": "prompt init: uniform (VPT's), or SPT prototypes of the training images' tokens entering each "
                "prompted block: mean-pool, max-pool, kmeans", "choices": PROMPT_INITS})


def init_samples_option() -> Any:
    """The `init_samples` field of a prompt method's Options: how many training images the prototypes read."""
    return field(default=DEFAULT_INIT_SAMPLES, metadata={
        "help": "training images (a seeded sample) whose tokens give the prototypes of a non-uniform init",
        "min": 1})


@dataclass(frozen=True)
class PromptInit:
    """A non-uniform prompt init a model asks for: `how` (one of `PROMPT_INITS`) from `samples` images."""

    how: str
    samples: int


def requested_init(options: Any, prompt: nn.Module | None, method: str) -> PromptInit | None:
    """The init `options` ask for (None for `uniform` or a method without the option); MethodError
    when `prompt` offers no tokens prototypes can fill (its `prototype_target()`, as `VitPrompt`'s)."""
    how = getattr(options, "init", "uniform")
    if how == "uniform":
        return None
    target = prompt.prototype_target() if hasattr(prompt, "prototype_target") else None
    if target is None:
        kind = type(prompt).__name__
        raise MethodError(f"init '{how}' starts ViT prompt tokens from token prototypes; {method}'s prompts on "
                          f"this backbone are a {kind}, not ViT tokens: use init=uniform (prototypes apply to ViTs)")
    return PromptInit(how, options.init_samples)


def block_generator(seed: int, block: int) -> torch.Generator:
    """The generator of block `block`'s (0-based) draws for a run seeded `seed`."""
    return torch.Generator().manual_seed(seed * 1009 + block)


@torch.no_grad()
def entering_tokens(backbone: nn.Module, batches: Iterable[torch.Tensor], blocks: Sequence[int]) -> list[torch.Tensor]:
    """Patch tokens `(N, L, C)` entering each of `blocks` (0-based) of the backbone without prompts, for
    every image of `batches` (kept on their device); prefix tokens are left out."""
    prefix, last = backbone.num_prefix_tokens, max(blocks)
    collected: dict[int, list[torch.Tensor]] = {block: [] for block in blocks}
    for images in batches:
        x = stem_tokens(backbone, backbone.patch_embed(images))
        for index, block in enumerate(backbone.blocks):
            if index in collected:
                collected[index].append(x[:, prefix:].float())
            if index == last:
                break
            x = block(x)
    return [torch.cat(collected[block]) for block in blocks]


def prototypes(tokens: torch.Tensor, how: str, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` prototypes `(count, C)` of `tokens` `(N, L, C)` by `how` (see the module docstring)."""
    if how == "kmeans":
        points = tokens.reshape(-1, tokens.shape[-1])
        return kmeans(points, kmeans_init(points, count, generator)).to(tokens.dtype)
    pooled = pooled_windows(tokens, count, how).reshape(-1, tokens.shape[-1])
    return pooled[torch.randperm(len(pooled), generator=generator)[:count].to(pooled.device)]


def pooled_windows(tokens: torch.Tensor, count: int, how: str) -> torch.Tensor:
    """Each image's tokens `(N, L, C)` pooled over `count` contiguous windows: `(N, count, C)`."""
    length = tokens.shape[1]
    if count > length:
        raise MethodError(f"init '{how}' pools each image's {length} patch tokens into num_prompts windows; "
                          f"num_prompts {count} > {length}: use fewer prompts or init=kmeans")
    windows = torch.tensor_split(tokens, count, dim=1)
    if how == "mean-pool":
        return torch.stack([w.mean(dim=1) for w in windows], dim=1)
    if how == "max-pool":
        return torch.stack([w.amax(dim=1) for w in windows], dim=1)
    raise MethodError(f"init '{how}' is not one of: {', '.join(PROMPT_INITS[1:])}")


def kmeans_init(points: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: the first centre a uniform draw from `points` `(M, C)`, each next one drawn with
    probability proportional to the squared distance to the nearest centre so far; `(count, C)` float64.
    Draws come from the CPU `generator` whatever the device of `points`."""
    points = points.double()
    centres = [points[int(torch.randint(len(points), (1,), generator=generator))]]
    nearest = ((points - centres[0]) ** 2).sum(dim=1)
    for _ in range(count - 1):
        if not nearest.sum() > 0:
            raise MethodError(f"init 'kmeans' needs {count} distinct tokens, the sample has fewer; "
                              "raise init_samples or use fewer prompts")
        centres.append(points[int(torch.multinomial(nearest.cpu(), 1, generator=generator))])
        nearest = torch.minimum(nearest, ((points - centres[-1]) ** 2).sum(dim=1))
    return torch.stack(centres)


def kmeans(
    points: torch.Tensor, centres: torch.Tensor, *, max_iter: int = KMEANS_MAX_ITER, tol: float = KMEANS_TOL
) -> torch.Tensor:
    """Lloyd's k-means of `points` `(M, C)` from `centres` `(k, C)`, in float64, as scikit-learn's `KMeans`
    iterates: assign each point to its nearest centre, move each centre to the mean of its points (a centre
    with none stays), until no assignment changes, the centres' total squared shift is at most `tol` times
    the points' mean per-feature variance, or `max_iter` rounds; the final centres `(k, C)`."""
    points, centres = points.double(), centres.double().to(points.device)
    limit = tol * points.var(dim=0, unbiased=False).mean()
    labels = None
    for _ in range(max_iter):
        # Nearest centre by |c|^2 - 2 x.c (the |x|^2 term is the same for every centre of a point).
        new = torch.addmm((centres ** 2).sum(dim=1), points, centres.T, alpha=-2).argmin(dim=1)
        if labels is not None and new.equal(labels):
            break
        labels = new
        sums = torch.zeros_like(centres).index_add_(0, labels, points)
        counts = torch.bincount(labels, minlength=len(centres)).unsqueeze(1)
        moved = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        shift, centres = ((moved - centres) ** 2).sum(), moved
        if shift <= limit:
            break
    return centres


@torch.no_grad()
def initial_prompts(
    backbone: nn.Module, batches: Iterable[torch.Tensor], target: PrototypeTarget, how: str, seed: int
) -> torch.Tensor:
    """The prototypes `(blocks, p, C)` of `target`'s blocks from the images of `batches` (module docstring)."""
    count = target.embeddings.shape[1]
    tokens = entering_tokens(backbone, batches, target.blocks)
    return torch.stack([prototypes(block_tokens, how, count, block_generator(seed, block))
                        for block, block_tokens in zip(target.blocks, tokens)])
