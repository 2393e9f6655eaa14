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

from .vit import SharedPrompts, reads_only_cls, vit_features


class SamplePrompts:
    """Per-sample prompts of several tasks (`SharedPrompts`, e.g. `VitPrompt`s at location `prepend`) for
    one batch of `batch` samples.

    `groups` pairs each task's prompt with the indices of its samples; samples in no group
    get no prompts. `cls_only` must say whether the forward computes only [CLS] in its last
    block (`reads_only_cls`), which decides whose prompt outputs travel on.

    The key/value prompts of every block are laid out once per batch in one table (task x
    block x slot), so that each block gathers its samples' prompts with one indexing op;
    so are the key-value prompts some tasks append to each attention (`key_values`, E2VPT).
    """

    def __init__(
        self, groups: list[tuple[SharedPrompts, torch.Tensor]], batch: int, depth: int, *, cls_only: bool
    ) -> None:
        self.groups = groups
        self.batch = batch
        # Blocks [first, stop) where a task's prompts give keys and values only; at `stop` (when
        # stop <= last_block) its prompt outputs travel on.
        self._kv_spans = [
            (p.first_block, p.last_block + 1 if cls_only and p.last_block == depth - 1 else p.last_block)
            for p, _ in groups
        ]
        travelling = [p.num_prompts for (p, _), (_, stop) in zip(groups, self._kv_spans) if stop <= p.last_block]
        self.slots = max(travelling, default=0)
        self.live: torch.Tensor | None = None  # (B, slots) bool once the slots are in the sequence
        self._table, self._owner, self._kv_width = _key_value_table(groups, self._kv_spans, batch, depth)
        self._attention = _attention_table(groups, self._owner)
        if self._attention is not None:
            self._owner = self._owner.to(self._attention[0].device)

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
        inserted = [(prompt, samples) for (prompt, samples), (_, stop) in zip(self.groups, self._kv_spans)
                    if index == stop <= prompt.last_block]
        if inserted:
            if self.live is None:
                empty = x.new_zeros(x.shape[0], self.slots, x.shape[2])
                x = torch.cat([x[:, :prefix], empty, x[:, prefix:]], dim=1)
                self.live = torch.zeros(x.shape[0], self.slots, dtype=torch.bool, device=x.device)
            else:
                x = x.clone()  # the previous block's output may be saved for its backward
            for prompt, samples in inserted:
                tokens = prompt.block_tokens(index - prompt.first_block, len(samples), backbone)
                x[samples, prefix:prefix + tokens.shape[1]] = tokens.to(x.dtype)
                self.live[samples, :tokens.shape[1]] = True
        width, all_live = self._kv_width[index]
        kv_tokens = kv_live = None
        if width:
            tokens, live = self._table
            kv_tokens = tokens[:, index, :width][self._owner].to(x.dtype)
            kv_live = None if all_live else live[:, index, :width][self._owner]
        return x, kv_tokens, self._key_mask(x, prefix, kv_tokens, kv_live)

    def attention_prompts(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Each sample's task's key-value prompts at block `index` `(B, heads, Q, head_dim)` (zeros, masked
        out of attention, where its task has fewer or none)."""
        if self._attention is None:
            return None
        keys_values = self._attention[0][:, index][self._owner]
        return keys_values[:, 0], keys_values[:, 1]

    def _key_mask(
        self, x: torch.Tensor, prefix: int, kv_tokens: torch.Tensor | None, kv_live: torch.Tensor | None
    ) -> torch.Tensor | None:
        slots_live = self.live is None or bool(self.live.all())
        attention_live = None if self._attention is None else self._attention[1]
        if slots_live and kv_live is None and attention_live is None:
            return None  # nothing padded: the unmasked attention kernel
        seen = torch.ones(x.shape[0], x.shape[1], dtype=torch.bool, device=x.device)
        if self.live is not None:
            seen[:, prefix:prefix + self.slots] = self.live
        parts = [seen]
        if kv_tokens is not None:
            parts.append(kv_live if kv_live is not None else
                         torch.ones(kv_tokens.shape[:2], dtype=torch.bool, device=x.device))
        if attention_live is not None:
            parts.append(attention_live[self._owner])
        return torch.cat(parts, dim=1)


def _key_value_table(
    groups: list[tuple[SharedPrompts, torch.Tensor]], spans: list[tuple[int, int]], batch: int, depth: int
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor, list[tuple[int, bool]]]:
    """Every task's key/value prompt tokens by block, zero-padded, and who reads which row.

    Returns `(tokens (T + 1, depth, P, C), live (T + 1, depth, P))` (row T: no prompts),
    each sample's row, and per block the slots in use and whether every sample fills them.
    """
    width = max((p.num_prompts for (p, _), (first, stop) in zip(groups, spans) if stop > first), default=0)
    owner = torch.full((batch,), len(groups), dtype=torch.long)
    for row, (_, samples) in enumerate(groups):
        owner[samples.cpu()] = row
    present = set(owner.tolist())
    per_block = []
    for index in range(depth):
        counts = {row: p.num_prompts for row, ((p, _), (first, stop)) in enumerate(zip(groups, spans))
                  if first <= index < stop}
        used = max(counts.values(), default=0)
        per_block.append((used, all(counts.get(row, 0) == used for row in present)))
    if width == 0:
        return None, owner, per_block
    tokens = live = None
    for row, ((prompt, _), (first, stop)) in enumerate(zip(groups, spans)):
        if stop > first:
            own = prompt.tokens(stop - first)
            if tokens is None:
                tokens = own.new_zeros(len(groups) + 1, depth, width, own.shape[-1])
                live = torch.zeros(len(groups) + 1, depth, width, dtype=torch.bool, device=own.device)
            tokens[row, first:stop, :own.shape[1]] = own
            live[row, first:stop, :own.shape[1]] = True
    return (tokens, live), owner.to(tokens.device), per_block


def _attention_table(
    groups: list[tuple[SharedPrompts, torch.Tensor]], owner: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Every task's key-value prompts `(T + 1, depth, 2, heads, Q, head_dim)` zero-padded to the longest
    (row T: none), and which slots each task fills `(T + 1, Q)` (None when every sample fills all)."""
    own = [prompt.key_values() for prompt, _ in groups]
    width = max((kv.shape[3] for kv in own if kv is not None), default=0)
    if width == 0:
        return None
    like = next(kv for kv in own if kv is not None)
    table = like.new_zeros(len(groups) + 1, *like.shape[:3], width, like.shape[4])
    live = torch.zeros(len(groups) + 1, width, dtype=torch.bool, device=like.device)
    for row, kv in enumerate(own):
        if kv is not None:
            table[row, :, :, :, :kv.shape[3]] = kv
            live[row, :kv.shape[3]] = True
    every_sample_full = bool(live[owner.unique()].all())
    return table, None if every_sample_full else live


def shared_features(backbone: nn.Module, images: torch.Tensor, groups: list[tuple[SharedPrompts | None, torch.Tensor]]
                    ) -> torch.Tensor:
    """Pre-head [CLS] features `(B, num_features)` of a batch mixing tasks, each sample with its task's prompts.

    `groups` pairs each task's prompts (None: none) with the rows of its samples.
    """
    prompted = [(prompts, rows) for prompts, rows in groups if prompts is not None]
    mixed = None
    if prompted:
        mixed = SamplePrompts(prompted, len(images), len(backbone.blocks), cls_only=reads_only_cls(backbone, "cls"))
    return vit_features(backbone, images, mixed, "cls")
