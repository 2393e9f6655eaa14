"""E2VPT's prompts for a timm ViT: VPT-Deep visual prompts plus key-value prompts in every attention.

Block `i` takes its own visual prompts (as VPT-Deep) and appends its own learnable keys
`P_K` and values `P_V` to those its attention projects from the tokens:
`softmax(q [k; P_K]^T * scale) [v; P_V]`. Key-value prompts have no query, so the block
outputs as many tokens as it takes. Pruning (methods/e2vpt_prune.py) masks visual prompt
tokens and segments of them: a masked prompt is `keep * P` (the paper's `rho * P`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .vit import VitPrompt


def key_value_prompts(blocks: int, heads: int, kv_prompts: int, head_dim: int) -> nn.Parameter:
    """Key-value prompts `(blocks, 2, heads, Q, head_dim)` with the authors' init: kaiming-uniform over each
    block's `(heads, Q, head_dim)` tensor, uniform(+-sqrt(6 / (Q * head_dim)))."""
    bound = math.sqrt(6.0 / (kv_prompts * head_dim))
    return nn.Parameter(torch.empty(blocks, 2, heads, kv_prompts, head_dim).uniform_(-bound, bound))


def masked_prompts(embeddings: torch.Tensor, keep: torch.Tensor | None, token_gate: torch.Tensor | None,
                   segment_gate: torch.Tensor | None) -> torch.Tensor:
    """Visual prompts `(..., M, C)` with the pruning mask `keep (M, segments)` (and the scoring gates) on
    each token's equal segments; unchanged without a mask."""
    if keep is None:
        return embeddings
    mask = keep
    if token_gate is not None:
        mask = mask * token_gate[:, None] * segment_gate
    width = embeddings.shape[-1] // mask.shape[1]
    return embeddings * mask.repeat_interleave(width, dim=1)


class E2vptPrompt(VitPrompt):
    """Visual prompts `embeddings (depth, M, C)` and key-value prompts `key_value (depth, 2, heads, Q, head_dim)`.

    With `segments` (pruning on) a persistent `keep (M, segments)` mask of 0/1 multiplies each
    prompt token's `segments` equal parts in every block; `token_gate` / `segment_gate`, when
    set, multiply it too (the mask variables whose gradients score importance).
    """

    def __init__(
        self, backbone: nn.Module, *, num_prompts: int, kv_prompts: int, dropout: float, segments: int | None
    ) -> None:
        depth = len(backbone.blocks)
        super().__init__(backbone, num_prompts=num_prompts, first_block=0, last_block=depth - 1, dropout=dropout)
        attn = backbone.blocks[0].attn
        self.key_value = key_value_prompts(depth, attn.num_heads, kv_prompts, attn.head_dim)
        self.register_buffer("keep", None if segments is None else torch.ones(num_prompts, segments))
        self.token_gate: torch.Tensor | None = None
        self.segment_gate: torch.Tensor | None = None

    def no_weight_decay(self) -> set[str]:
        return {"embeddings", "key_value"}

    def visual(self) -> torch.Tensor:
        """Every block's visual prompts `(depth, M, C)` with the pruning mask (and scoring gates) applied."""
        return masked_prompts(self.embeddings, self.keep, self.token_gate, self.segment_gate)

    def tokens(self, count: int) -> torch.Tensor:
        return self.dropout(self.visual()[:count])

    def block_tokens(self, index: int, batch: int, backbone: nn.Module) -> torch.Tensor:
        return self.dropout(self.visual()[index].unsqueeze(0).expand(batch, -1, -1))

    def key_values(self) -> torch.Tensor:
        return self.key_value

    def attention_prompts(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.key_value[index].unsqueeze(1)
        return keys, values

    def kept_values_per_block(self) -> int:
        """Visual prompt values a block takes that pruning left (all of them without pruning)."""
        width = self.embeddings.shape[-1]
        if self.keep is None:
            return self.embeddings.shape[1] * width
        return int(self.keep.sum()) * width // self.keep.shape[1]
