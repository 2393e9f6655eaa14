"""AdaptFormer (Chen et al., NeurIPS 2022): a scaled bottleneck beside the MLP branch of every block."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..model import FOLLOWS_TRAIN_MODE, TunedModel
from ..prompts import require_family
from .base import NEW_TENSOR_LRS, Method, register
from .inject import add_branch_module


@dataclass
class AdaptFormerOptions:
    bottleneck: int = field(default=64, metadata={"help": "bottleneck width of every AdaptMLP", "min": 1})
    scale: float = field(default=0.1, metadata={"help": "fixed factor s on the AdaptMLP's output"})
    dropout: float = field(
        default=0.1, metadata={"help": "dropout after the AdaptMLP's ReLU while training", "min": 0.0, "below": 1.0}
    )


class AdaptMlp(nn.Module):
    """`s * up(dropout(relu(down(x))))`, added beside a block's MLP branch.

    Initialised as the authors' code does ("lora" init): `down`'s weight keeps nn.Linear's
    kaiming-uniform draw, its bias and all of `up` start at zero, so the adapted block starts
    exactly as the pretrained one.
    """

    def __init__(self, dim: int, bottleneck: int, scale: float, dropout: float) -> None:
        super().__init__()
        self.scale = scale
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        # Dropout acts in training although the backbone around it stays in eval mode.
        setattr(self.dropout, FOLLOWS_TRAIN_MODE, True)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(self.dropout(self.act(self.down(x))))


@register
class AdaptFormerMethod(Method):
    name = "adaptformer"
    Options = AdaptFormerOptions
    summary = "AdaptFormer: a scaled bottleneck (AdaptMLP) beside the MLP branch of every block"
    # The fixed scale s = 0.1 shrinks every update of the AdaptMLP's output tenfold, so it takes
    # the larger steps of new-tensor methods (docs/learning-rates.md).
    default_lr = 5e-3
    lr_grid = NEW_TENSOR_LRS
    changes_backbone = True

    def attach(self, model: TunedModel, options: AdaptFormerOptions) -> None:
        backbone = model.backbone
        family = require_family(backbone, self.name, ("vit", "swin"), "for ConvNets use bias, partial-k or vpt-shallow")
        for block in family.blocks(backbone):
            adapter = AdaptMlp(block.mlp.fc2.out_features, options.bottleneck, options.scale, options.dropout)
            # x' (the sequence after attention's residual) -> x' + MLP branch(x') + s * AdaptMLP(x'), as in the
            # authors' code, which feeds x' itself (no layer norm) to the AdaptMLP. The MLP branch ends after
            # the block's layer scale where it has one (DINOv2), so that scale leaves s alone.
            joins = block.ls2 if hasattr(block, "ls2") else block.mlp
            add_branch_module(block, "adaptformer", adapter, reads=block.norm2, joins=joins)
