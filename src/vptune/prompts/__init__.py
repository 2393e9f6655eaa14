"""Where prompts meet a backbone: ViT tokens, Swin windows, a ConvNet's pixel border."""

from __future__ import annotations

import torch
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from ..errors import MethodError
from .conv import BorderPrompt, conv_features
from .swin import SwinPrompt, swin_features
from .vit import VitPrompt, is_vit, vit_block_maps, vit_features

FAMILY_NAMES = {"vit": "ViT", "swin": "Swin", "conv": "ConvNet"}


def backbone_family(backbone: nn.Module) -> str:
    """`vit`, `swin`, `conv` (a timm model without a patch embedding) or `other`."""
    if is_vit(backbone):
        return "vit"
    if isinstance(backbone, SwinTransformer):
        return "swin"
    if not hasattr(backbone, "patch_embed"):
        return "conv"
    return "other"


def require_family(backbone: nn.Module, method: str, families: tuple[str, ...], hint: str) -> str:
    """The backbone's family; MethodError naming `hint` when `method` does not apply to it."""
    family = backbone_family(backbone)
    if family not in families:
        wanted = ", ".join(FAMILY_NAMES[f] for f in families)
        kind = f"a {FAMILY_NAMES[family]}" if family in FAMILY_NAMES else "none of these"
        raise MethodError(
            f"method '{method}' needs a timm backbone of family {wanted}; "
            f"{type(backbone).__name__} is {kind} ({hint})"
        )
    return family


def check_output_applies(backbone: nn.Module, output: str) -> None:
    """Raise MethodError for a final-output ablation the backbone has no tokens for."""
    if output != "cls" and backbone_family(backbone) != "vit":
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
    if isinstance(prompt, SwinPrompt):
        return swin_features(backbone, images, prompt, checkpoint=checkpoint)
    if isinstance(prompt, BorderPrompt):
        return conv_features(backbone, images, prompt)
    return vit_features(backbone, images, prompt, output, checkpoint=checkpoint)


__all__ = [
    "BorderPrompt",
    "SwinPrompt",
    "VitPrompt",
    "backbone_family",
    "check_output_applies",
    "prompted_features",
    "require_family",
    "vit_block_maps",
]
