"""Prompts of several tasks in one ViT batch: each sample takes its own task's prompts.

Tasks differ in prompt count and block range, so prompt slots are padded to the largest
count and the padded slots are masked out of attention; a sample whose task has no prompts
at a block (or none at all: linear probing) sees every slot masked. With the masks, each
sample's tokens are exactly those of its task's own forward. The savings of the prompted
forward hold per sample: prompts that the next block replaces give keys and values only.
Prompts whose outputs travel on (shallow prompts, the end of a block range) enter the
sequence in shared slots from the first block where any task's do.
"""

from __future__ import annotations

import torch
from torch import nn

from .vit import VitPrompt


class SamplePrompts:
    """Per-sample `VitPrompt`s (location `prepend`) for one batch of `batch` samples.

    `groups` pairs each task's prompt with the indices of its samples; samples in no group
    get no prompts. `cls_only` must say whether the forward computes only [CLS] in its last
    block (`reads_only_cls`), which decides whose prompt outputs travel on.
    """

    def __init__(
        self, groups: list[tuple[VitPrompt, torch.Tensor]], batch: int, depth: int, *, cls_only: bool
    ) -> None:
        for prompt, _ in groups:
            if prompt.location != "prepend":
                raise ValueError(f"per-sample prompts take location 'prepend', not '{prompt.location}'")
        self.groups = groups
        self.batch = batch
        # Tasks whose last prompted block's outputs travel on rather than give keys and values only.
        travelling = [p.num_prompts for p, _ in groups if not (cls_only and p.last_block == depth - 1)]
        self.slots = max(travelling, default=0)
        self.live: torch.Tensor | None = None  # (B, slots) bool once the slots are in the sequence

    @property
    def num_prompts(self) -> int:
        """Prompt slots in the final sequence, after the prefix tokens (padded ones included)."""
        return self.slots

    def patch_tokens(self, images: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
        return backbone.patch_embed(images)

    def enter_block(
        self, index: int, x: torch.Tensor, backbone: nn.Module, *, final: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """As `VitPrompt.enter_block`, per sample, with the key mask over `[x, kv tokens]`."""
        prefix = backbone.num_prefix_tokens
        kv_parts, inserted = [], []
        for prompt, samples in self.groups:
            if prompt.first_block <= index <= prompt.last_block:
                tokens = prompt.block_tokens(index - prompt.first_block, len(samples), backbone)
                replaced = index < prompt.last_block or final
                (kv_parts if replaced else inserted).append((samples, tokens))
        if inserted:
            if self.live is None:
                empty = x.new_zeros(x.shape[0], self.slots, x.shape[2])
                x = torch.cat([x[:, :prefix], empty, x[:, prefix:]], dim=1)
                self.live = torch.zeros(x.shape[0], self.slots, dtype=torch.bool, device=x.device)
            else:
                x = x.clone()  # the previous block's output may be saved for its backward
            for samples, tokens in inserted:
                x[samples, prefix:prefix + tokens.shape[1]] = tokens.to(x.dtype)
                self.live[samples, :tokens.shape[1]] = True
        kv_tokens, kv_live = _padded(kv_parts, x)
        return x, kv_tokens, self._key_mask(x, prefix, kv_live)

    def _key_mask(self, x: torch.Tensor, prefix: int, kv_live: torch.Tensor | None) -> torch.Tensor | None:
        masks = [] if self.live is None else [self.live]
        masks += [] if kv_live is None else [kv_live]
        if all(bool(m.all()) for m in masks):
            return None  # nothing padded: the unmasked attention kernel
        seen = torch.ones(x.shape[0], x.shape[1], dtype=torch.bool, device=x.device)
        if self.live is not None:
            seen[:, prefix:prefix + self.slots] = self.live
        return seen if kv_live is None else torch.cat([seen, kv_live], dim=1)


def _padded(
    parts: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Key/value tokens `(B, P_max, C)` of every sample, zero-padded, and which of them are real."""
    if not parts:
        return None, None
    width = max(tokens.shape[1] for _, tokens in parts)
    kv = x.new_zeros(x.shape[0], width, x.shape[2])
    live = torch.zeros(x.shape[0], width, dtype=torch.bool, device=x.device)
    for samples, tokens in parts:
        kv[samples, :tokens.shape[1]] = tokens.to(x.dtype)
        live[samples, :tokens.shape[1]] = True
    return kv, live
