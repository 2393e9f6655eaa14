"""Adapter+ (Steitz & Roth, "Adapters Strike Back", CVPR 2024): a post-adapter with channel-wise scaling."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from timm.layers import DropPath
from torch import nn

from ..model import FOLLOWS_TRAIN_MODE, TunedModel
from ..prompts import require_family
from .base import Method, register
from .inject import add_output_module

HOULSBY_STD = 0.01  # the paper's value; weights are drawn from N(0, std^2) truncated at 2 std


@dataclass
class AdapterPlusOptions:
    bottleneck: int = field(default=8, metadata={"help": "bottleneck width r of every adapter", "min": 1})
    drop_path: float = field(
        default=0.1, metadata={"help": "stochastic depth on the adapter branch while training", "min": 0.0, "below": 1.0}
    )


class AdapterPlus(nn.Module):
    """`x + s * drop_path(up(gelu(down(x))))`, `s` a learnable scale per channel (starting at 1).

    As the paper's Adapter+: no layer norm inside, biases on both projections, Houlsby
    initialisation (both weights small and random, biases zero), so the adapted block starts
    near, not exactly at, the pretrained one.
    """

    def __init__(self, dim: int, bottleneck: int, drop_path: float) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        self.scale = nn.Parameter(torch.ones(dim))
        self.drop_path = DropPath(drop_path)
        # Stochastic depth acts in training although the backbone around it stays in eval mode.
        setattr(self.drop_path, FOLLOWS_TRAIN_MODE, True)
        for linear in (self.down, self.up):
            nn.init.trunc_normal_(linear.weight, std=HOULSBY_STD, a=-2 * HOULSBY_STD, b=2 * HOULSBY_STD)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.up(self.act(self.down(x)))) * self.scale


@register
class AdapterPlusMethod(Method):
    name = "adapter-plus"
    Options = AdapterPlusOptions
    summary = "Adapter+: an adapter after every block's MLP residual, with a learnable scale per channel"
    # Larger than the paper's 1e-3 (100 epochs): short runs learn faster at 2e-3 (docs/learning-rates.md).
    default_lr = 2e-3
    lr_grid = (1e-3, 2e-3, 5e-3)
    changes_backbone = True

    def attach(self, model: TunedModel, options: AdapterPlusOptions) -> None:
        backbone = model.backbone
        family = require_family(backbone, self.name, ("vit", "swin"), "for ConvNets use bias, partial-k or vpt-shallow")
        for block in family.blocks(backbone):
            # The paper's Post-Adapter: it reads the block's output, after the MLP's residual
            # addition, and adds its own residual to it.
            adapter = AdapterPlus(block.mlp.fc2.out_features, options.bottleneck, options.drop_path)
            add_output_module(block, "adapter_plus", adapter)
