"""E2VPT's prompts on a timm SwinTransformer: Swin VPT-Deep visual prompts (prompts/swin.py) plus key-value
prompts that every window attention of a block appends to its keys and values.

The key-value prompts of a block are shared by all its windows, like its attention weights;
they have no relative-position bias and are never masked (the authors' Swin variant pads the
bias and the shift mask with zeros for them). Pruning masks the visual prompts with one
`keep (M, segments)` mask in every block of every stage, each stage's tokens split into
`segments` equal parts of its own width.
"""

from __future__ import annotations

import torch
from torch import nn

from .e2vpt import key_value_prompts, masked_prompts
from .swin import SwinPrompt


class E2vptSwinPrompt(SwinPrompt):
    """Visual prompts `embeddings[s] (depth_s, M, dim_s)` and key-value prompts
    `key_value[s] (depth_s, 2, heads_s, Q, head_dim_s)` for each stage `s`."""

    def __init__(
        self, backbone: nn.Module, *, num_prompts: int, kv_prompts: int, dropout: float, segments: int | None
    ) -> None:
        super().__init__(backbone, num_prompts=num_prompts, deep=True, dropout=dropout)
        self.key_value = nn.ParameterList()
        for stage in backbone.layers:
            attn = stage.blocks[0].attn
            self.key_value.append(key_value_prompts(len(stage.blocks), attn.num_heads, kv_prompts,
                                                    stage.blocks[0].dim // attn.num_heads))
        self.register_buffer("keep", None if segments is None else torch.ones(num_prompts, segments))
        self.token_gate: torch.Tensor | None = None
        self.segment_gate: torch.Tensor | None = None

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {f"key_value.{i}" for i in range(len(self.key_value))}

    def block_tokens(self, stage: int, block: int, batch: int) -> torch.Tensor:
        visual = masked_prompts(self.embeddings[stage][block], self.keep, self.token_gate, self.segment_gate)
        return self.dropout(visual.unsqueeze(0).expand(batch, -1, -1))

    def attention_prompts(self, stage: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.key_value[stage][block]
        return keys, values

    def kept_values_per_block(self) -> list[int]:
        """Visual prompt values a block of each stage takes that pruning left (all of them without pruning)."""
        widths = [embeddings.shape[-1] for embeddings in self.embeddings]
        if self.keep is None:
            return [self.embeddings[0].shape[1] * width for width in widths]
        return [int(self.keep.sum()) * width // self.keep.shape[1] for width in widths]
