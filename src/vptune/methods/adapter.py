"""Adapters (Pfeiffer placement): a bottleneck with a residual after the MLP of every block."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..model import TunedModel
from ..prompts import require_family
from .base import PRETRAINED_LRS, Method, register
from .inject import add_output_module


@dataclass
class AdapterOptions:
    reduction: int = field(default=8, metadata={"help": "bottleneck width = block width // reduction", "min": 1})


class Adapter(nn.Module):
    """`x + up(gelu(down(x)))`, `down` mapping `dim` to `dim // reduction`.

    `up` starts at zero, so the adapted block starts as the pretrained one; `down` keeps
    nn.Linear's random init. With both at zero (a bug in the authors' public code) neither
    would ever get a gradient.
    """

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, dim // reduction)
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


@register
class AdapterMethod(Method):
    name = "adapter"
    Options = AdapterOptions
    summary = "Pfeiffer adapters after the MLP of every transformer block (reduction rate r)"
    default_lr = 1e-3
    lr_grid = PRETRAINED_LRS
    changes_backbone = True

    def attach(self, model: TunedModel, options: AdapterOptions) -> None:
        backbone = model.backbone
        family = require_family(backbone, self.name, ("vit", "swin"), "for ConvNets use bias, partial-k or vpt-shallow")
        for block in family.blocks(backbone):
            # Adapter(FFN output) + FFN output, then the block's own residual, as in the authors' code.
            add_output_module(block.mlp, "adapter", Adapter(block.mlp.fc2.out_features, options.reduction))
