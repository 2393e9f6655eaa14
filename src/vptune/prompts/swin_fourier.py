"""Visual Fourier prompts on a timm SwinTransformer: Swin VPT-Deep prompts (prompts/swin.py) of which the
first share per block enters as the real part of its 2-D FFT, as in the authors' Swin variant."""

from __future__ import annotations

import torch
from torch import nn

from .swin import SwinPrompt
from .vit_fourier import fourier_tokens


class FourierSwinPrompt(SwinPrompt):
    """Deep Swin prompts `embeddings[s] (depth_s, num_prompts, dim_s)` whose first `fourier_prompts` per block
    enter as `Re(FFT2(P[:f]))` over their (prompt, channel) plane, after dropout; the rest unchanged."""

    def __init__(self, backbone: nn.Module, *, num_prompts: int, fourier_prompts: int, dropout: float) -> None:
        super().__init__(backbone, num_prompts=num_prompts, deep=True, dropout=dropout)
        self.fourier_prompts = fourier_prompts

    def block_tokens(self, stage: int, block: int, batch: int) -> torch.Tensor | None:
        tokens = super().block_tokens(stage, block, batch)
        return None if tokens is None else fourier_tokens(tokens, self.fourier_prompts)
