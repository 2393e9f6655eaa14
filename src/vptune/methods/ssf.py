"""SSF (Lian et al., 2022): learnable per-channel scale and shift after every operation."""

from __future__ import annotations

import torch
from torch import nn

from ..model import TunedModel
from ..prompts import require_family
from ..option_fields import NoOptions
from .base import PRETRAINED_LRS, Method, register
from .inject import add_output_module


class ScaleShift(nn.Module):
    """`x * scale + shift` over channel dimension `channel_dim`; starts as the identity."""

    def __init__(self, channels: int, channel_dim: int = -1) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.ndim
        shape[self.channel_dim] = -1
        return x * self.scale.view(shape) + self.shift.view(shape)


@register
class Ssf(Method):
    name = "ssf"
    Options = NoOptions
    summary = "scale-and-shift features after every linear layer, layer norm and the patch embedding"
    default_lr = 1e-3
    lr_grid = PRETRAINED_LRS
    changes_backbone = True

    def attach(self, model: TunedModel, options: NoOptions) -> None:
        # As in the SSF paper's ViT and Swin: after the patch-embedding projection, every
        # LayerNorm and every linear layer (qkv, attention projection, fc1, fc2, patch merging).
        # Scale 1 and shift 0 at the start (the SSF code draws them near 1 and 0), so training
        # starts from the pretrained network.
        backbone = model.backbone
        require_family(backbone, self.name, ("vit", "swin"), "for ConvNets use bias, partial-k or vpt-shallow")
        targets = [(m, m.out_features) for m in backbone.modules() if isinstance(m, nn.Linear)]
        targets += [(m, m.normalized_shape[-1]) for m in backbone.modules() if isinstance(m, nn.LayerNorm)]
        for module, channels in targets:
            add_output_module(module, "ssf", ScaleShift(channels))
        proj = backbone.patch_embed.proj  # a convolution: channels first
        add_output_module(proj, "ssf", ScaleShift(proj.out_channels, channel_dim=1))
