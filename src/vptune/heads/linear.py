"""The linear classification head: one fully connected layer on the pooled features."""

from __future__ import annotations

from torch import nn

from .base import Head, NoOptions, register


@register
class LinearHead(Head):
    name = "linear"
    task_type = "classification"
    Options = NoOptions
    summary = "a linear classifier on the pooled features"

    def build(self, backbone: nn.Module, num_classes: int, options: NoOptions) -> nn.Module:
        return nn.Linear(backbone.num_features, num_classes)
