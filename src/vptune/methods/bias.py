"""BitFit: every bias term of the backbone trains, with the head."""

from __future__ import annotations

from torch import nn

from ..errors import MethodError
from ..model import TunedModel
from ..option_fields import NoOptions
from .base import PRETRAINED_LRS, Method, register


def train_biases(backbone: nn.Module) -> None:
    """Mark every `*.bias` parameter of `backbone` trainable (not Swin's position-bias tables)."""
    biases = [p for name, p in backbone.named_parameters() if name.rpartition(".")[2] == "bias"]
    if not biases:
        raise MethodError(f"{type(backbone).__name__} has no bias terms to tune; use another method")
    for param in biases:
        param.requires_grad_(True)


@register
class Bias(Method):
    name = "bias"
    Options = NoOptions
    summary = "BitFit: tune every bias term of the backbone and the head"
    default_lr = 1e-3
    lr_grid = PRETRAINED_LRS
    changes_backbone = True

    def attach(self, model: TunedModel, options: NoOptions) -> None:
        train_biases(model.backbone)
