"""Visual Fourier prompts (Zeng et al., NeurIPS 2024): VPT-Deep prompts of which a share enters each block
as the real part of its 2-D discrete Fourier transform."""

from __future__ import annotations

import torch
from torch import nn

from .vit import VitPrompt


def fourier_count(num_prompts: int, fraction: float) -> int:
    """How many of `num_prompts` prompts are Fourier prompts: floor(num_prompts * fraction), as the authors' code."""
    # The tolerance keeps e.g. 100 * 0.29 (28.999...) at 29.
    return int(num_prompts * fraction + 1e-9)


def fourier_tokens(tokens: torch.Tensor, count: int) -> torch.Tensor:
    """`tokens (..., p, C)` with the first `count` prompts replaced by Re(FFT2) over their (prompt, channel) plane.

    The transform runs in float32 (half-precision FFTs take only power-of-two sizes) and
    returns the tokens' dtype.
    """
    if count == 0:
        return tokens
    spectrum = torch.fft.fft2(tokens[..., :count, :].float()).real.to(tokens.dtype)
    return torch.cat([spectrum, tokens[..., count:, :]], dim=-2)


class FourierVitPrompt(VitPrompt):
    """VPT-Deep prompts for every block of a ViT whose first `fourier_prompts` per block enter transformed.

    The learned values are `embeddings (depth, num_prompts, embed_dim)`, as for VPT-Deep; what a
    block sees is `[Re(FFT2(P[:f])), P[f:]]` with `f = fourier_prompts` and `P` the block's prompts
    after dropout (the authors' order). Everything else (insertion, replacement, the prompted fast
    path, mixed batches) is VPT-Deep's: only the tokens differ.
    """

    def __init__(self, backbone: nn.Module, *, num_prompts: int, fourier_prompts: int, dropout: float) -> None:
        super().__init__(backbone, num_prompts=num_prompts, first_block=0, last_block=len(backbone.blocks) - 1,
                         dropout=dropout)
        self.fourier_prompts = fourier_prompts

    def tokens(self, count: int) -> torch.Tensor:
        return fourier_tokens(super().tokens(count), self.fourier_prompts)

    def block_tokens(self, index: int, batch: int, backbone: nn.Module) -> torch.Tensor:
        return fourier_tokens(super().block_tokens(index, batch, backbone), self.fourier_prompts)
