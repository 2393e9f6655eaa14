"""Full fine-tuning: every backbone tensor trains, with the head."""

from __future__ import annotations

from ..model import TunedModel
from ..option_fields import NoOptions
from .base import PRETRAINED_LRS, Method, register


@register
class Full(Method):
    name = "full"
    Options = NoOptions
    summary = "fine-tune every backbone tensor and the head"
    default_lr = 1e-4
    lr_grid = PRETRAINED_LRS
    changes_backbone = True

    def attach(self, model: TunedModel, options: NoOptions) -> None:
        for param in model.backbone.parameters():
            param.requires_grad_(True)
        # Dropout, drop-path and batch-norm statistics behave as in ordinary fine-tuning.
        model.backbone_trains = True
