"""Prompts for ConvNets: a learnable border of `width` pixels around the input image."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import MethodError
from .family import FAMILIES, BackboneFamily, PromptSettings


class BorderPrompt(nn.Module):
    """Learnable pixel strips that pad an `(S_h, S_w)` image to `(S_h + 2p, S_w + 2p)`.

    `top_bottom` is `(2, C, p, S_w + 2p)` and `left_right` `(2, C, S_h, p)`. As in the authors'
    code the strips live in [0, 1] pixel space (uniform init) and are normalised with the
    backbone's mean and std, so they start as plausible pixels next to normalised images.
    """

    shares_batch = False  # the border changes the image itself

    def __init__(self, backbone: nn.Module, *, width: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        config = backbone.pretrained_cfg
        channels = config.get("input_size", (3,))[0]
        height, image_width = image_size
        self.image_size = (height, image_width)
        self.top_bottom = nn.Parameter(torch.rand(2, channels, width, image_width + 2 * width))
        self.left_right = nn.Parameter(torch.rand(2, channels, height, width))
        # Rebuilt from the backbone's config, so not part of the per-task file.
        mean, std = config.get("mean", (0.0,) * channels), config.get("std", (1.0,) * channels)
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1), persistent=False)

    def no_weight_decay(self) -> set[str]:
        return {"top_bottom", "left_right"}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images `(B, C, S_h, S_w)` framed by the border: `(B, C, S_h + 2p, S_w + 2p)`."""
        if tuple(images.shape[-2:]) != self.image_size:
            raise MethodError(
                f"the border prompt was made for {self.image_size[0]}x{self.image_size[1]} images, "
                f"got {images.shape[-2]}x{images.shape[-1]}; resize the inputs or create the model with that img_size"
            )
        batch = images.shape[0]
        top, bottom = ((self.top_bottom - self.mean) / self.std).unbind(0)
        left, right = ((self.left_right - self.mean) / self.std).unbind(0)
        x = torch.cat([left.expand(batch, -1, -1, -1), images, right.expand(batch, -1, -1, -1)], dim=3)
        return torch.cat([top.expand(batch, -1, -1, -1), x, bottom.expand(batch, -1, -1, -1)], dim=2)


def conv_features(backbone: nn.Module, images: torch.Tensor, prompt: BorderPrompt) -> torch.Tensor:
    """Pre-head features `(B, num_features)` of the backbone on the framed images."""
    return backbone.forward_head(backbone.forward_features(prompt(images)), pre_logits=True)


@FAMILIES.register
class ConvFamily(BackboneFamily):
    """ConvNets (timm models without a patch embedding): prompts are a learnable pixel border."""

    name = "conv"
    label = "ConvNet"
    default_prompts = 5  # border pixels, the paper's p

    def matches(self, backbone: nn.Module) -> bool:
        return not hasattr(backbone, "patch_embed")

    def features(
        self, backbone: nn.Module, images: torch.Tensor, prompt: nn.Module | None, output: str, *, checkpoint: bool
    ) -> torch.Tensor:
        return conv_features(backbone, images, prompt)

    def vpt_prompt(self, backbone: nn.Module, settings: PromptSettings) -> tuple[BorderPrompt, PromptSettings]:
        self.refuse_vit_options(backbone, settings)
        if settings.dropout:
            raise MethodError("prompt_dropout acts on prompt tokens; a ConvNet's border prompt has none")
        return BorderPrompt(backbone, width=settings.num_prompts, image_size=settings.image_size), settings
