"""The ViT family: prompt tokens entering a timm VisionTransformer's sequence."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from ..errors import MethodError
from .family import FAMILIES, BackboneFamily, BatchedForward, PromptSettings
from .vit import VitPrompt, is_vit, vit_block_maps, vit_features
from .vit_fast import handles_rows
from .vit_samples import shared_features


@FAMILIES.register
class VitFamily(BackboneFamily):
    """timm VisionTransformers: prompt tokens enter the sequence (prompts/vit.py)."""

    name = "vit"
    label = "ViT"
    default_prompts = 10
    reads_tokens = True
    reads_blocks = True

    def matches(self, backbone: nn.Module) -> bool:
        return is_vit(backbone)

    def features(
        self, backbone: nn.Module, images: torch.Tensor, prompt: nn.Module | None, output: str, *, checkpoint: bool
    ) -> torch.Tensor:
        return vit_features(backbone, images, prompt, output, checkpoint=checkpoint)

    def blocks(self, backbone: nn.Module) -> list[nn.Module]:
        return list(backbone.blocks)

    def block_maps(
        self, backbone: nn.Module, images: torch.Tensor, prompt: nn.Module | None, blocks: Sequence[int], *,
        checkpoint: bool,
    ) -> list[torch.Tensor]:
        return vit_block_maps(backbone, images, prompt, blocks, checkpoint=checkpoint)

    def batched_forward(self, backbone: nn.Module) -> BatchedForward | None:
        # Samples of several tasks need blocks computed row by row with a key mask.
        if not all(handles_rows(block) for block in backbone.blocks):
            return None
        return partial(shared_features, backbone)

    def vpt_prompt(self, backbone: nn.Module, settings: PromptSettings) -> tuple[VitPrompt, PromptSettings]:
        first, last = _block_range(settings, len(backbone.blocks))
        # Added prompts sit on every patch token, so there is one per patch.
        num_prompts = backbone.patch_embed.num_patches if settings.location == "add" else settings.num_prompts
        prompt = VitPrompt(
            backbone,
            num_prompts=num_prompts,
            first_block=first - 1,
            last_block=last - 1,
            prompt_dim=settings.prompt_dim,
            dropout=settings.dropout,
            location=settings.location,
        )
        deep_blocks = (first, last) if settings.deep else None
        return prompt, dataclasses.replace(settings, num_prompts=num_prompts, deep_blocks=deep_blocks)


def _block_range(settings: PromptSettings, depth: int) -> tuple[int, int]:
    if not settings.deep:
        return 1, 1
    if settings.deep_blocks is None:
        return 1, depth
    first, last = settings.deep_blocks
    if not 1 <= first <= last <= depth:
        raise MethodError(
            f"deep_blocks {settings.deep_blocks} must satisfy 1 <= i <= j <= {depth} (blocks are 1-based)"
        )
    return first, last
