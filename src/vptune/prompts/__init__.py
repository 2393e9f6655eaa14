"""Where prompts meet a backbone: ViT tokens, Swin windows, a ConvNet's pixel border, one family each."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import MethodError
from .family import FAMILIES, BackboneFamily, BatchedForward, PromptSettings, backbone_family
from . import vit_family, swin, conv  # noqa: F401  (registration)
from .conv import BorderPrompt
from .swin import SwinPrompt
from .vit import VitPrompt, vit_block_maps


def require_family(backbone: nn.Module, method: str, families: tuple[str, ...], hint: str) -> BackboneFamily:
    """The backbone's family; MethodError naming `hint` when `method` does not apply to it."""
    family = backbone_family(backbone)
    if family is None or family.name not in families:
        wanted = ", ".join(FAMILIES.get(name).label for name in families)
        kind = f"a {family.label}" if family is not None else "none of these"
        raise MethodError(
            f"method '{method}' needs a timm backbone of family {wanted}; "
            f"{type(backbone).__name__} is {kind} ({hint})"
        )
    return family


def check_output_applies(backbone: nn.Module, output: str) -> None:
    """Raise MethodError for a final-output ablation the backbone has no tokens for."""
    family = backbone_family(backbone)
    if output != "cls" and (family is None or not family.reads_tokens):
        raise MethodError(
            f"output '{output}' reads ViT tokens; {type(backbone).__name__} has only its own pooling, "
            "use output='cls'"
        )


def prompted_features(
    backbone: nn.Module, images: torch.Tensor, prompt: nn.Module | None, output: str, *, checkpoint: bool = False
) -> torch.Tensor:
    """Pre-head features `(B, num_features)` of `backbone` with `prompt` (or none) in place.

    `checkpoint` recomputes each block in the backward pass to save memory.
    """
    family = backbone_family(backbone)
    if family is None:
        raise MethodError(f"{type(backbone).__name__} is no ViT, Swin or ConvNet; prompts cannot enter it")
    return family.features(backbone, images, prompt, output, checkpoint=checkpoint)


__all__ = [
    "FAMILIES",
    "BackboneFamily",
    "BatchedForward",
    "BorderPrompt",
    "PromptSettings",
    "SwinPrompt",
    "VitPrompt",
    "backbone_family",
    "check_output_applies",
    "prompted_features",
    "require_family",
    "vit_block_maps",
]
