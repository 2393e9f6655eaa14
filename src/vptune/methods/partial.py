"""Partial-k: the last k blocks, the final norm and the head train."""

from __future__ import annotations

from dataclasses import dataclass, field

from timm.models import group_parameters
from torch import nn

from ..errors import MethodError
from ..model import TunedModel
from .base import PRETRAINED_LRS, Method, register

# Top-level timm modules after the last block: final norm, pooling and head parts.
FINAL_MODULES = ("norm", "fc_norm", "attn_pool", "head")


@dataclass
class PartialOptions:
    k: int = field(default=1, metadata={"help": "how many of the last blocks train, as partial-k names them", "min": 1})


def backbone_blocks(backbone: nn.Module) -> list[list[str]]:
    """Parameter names of each block, in forward order.

    A block is one of timm's fine parameter groups (`group_matcher(coarse=False)`, the grouping
    timm uses for layer-wise learning-rate decay) without the stem and the final modules. So a
    ViT block is `blocks.i`; Swin's blocks run through all stages, each patch merging belonging
    to the first block of its stage; a ResNet's are the blocks of layer1..layer4 in order.
    """
    groups = group_parameters(backbone, backbone.group_matcher(coarse=False))
    blocks = [
        [name for name in names if name.partition(".")[0] not in FINAL_MODULES]
        for _, names in sorted(groups.items())[1:]
    ]
    return [names for names in blocks if names]


@register
class Partial(Method):
    name = "partial-k"
    Options = PartialOptions
    summary = "tune the last k blocks, the final norm and the head (partial-1, partial-2, ...)"
    default_lr = 1e-4
    lr_grid = PRETRAINED_LRS
    changes_backbone = True

    def attach(self, model: TunedModel, options: PartialOptions) -> None:
        blocks = backbone_blocks(model.backbone)
        if options.k > len(blocks):
            raise MethodError(
                f"partial-{options.k}: {model.config['arch']} has {len(blocks)} blocks; use k from 1 to {len(blocks)}"
            )
        tuned = {name for names in blocks[-options.k:] for name in names}
        for name, param in model.backbone.named_parameters():
            if name in tuned or name.partition(".")[0] in FINAL_MODULES:
                param.requires_grad_(True)
