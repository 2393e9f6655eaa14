"""Sidetune: a small side network on the image, blended with the frozen features by a learnable gate."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..model import TunedModel
from .base import Method, register


@dataclass
class SidetuneOptions:
    width: int = field(default=32, metadata={"help": "channels of the side network's first stage", "min": 1})


class SideNetwork(nn.Module):
    """`features -> a * features + (1 - a) * side(images)` with `a = sigmoid(gate)`, gate starting at 0.

    The side network is four stride-2 3x3 conv-BN-ReLU stages (`width`, 2x, 4x, 8x channels),
    a global average pool and a linear map to the backbone's feature width, trained from
    scratch. (The authors' code uses ImageNet AlexNet conv features as the side network; this
    one is small and needs no download, so Sidetune numbers are not directly comparable.)
    """

    def __init__(self, in_channels: int, num_features: int, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for out_channels in (width, 2 * width, 4 * width, 8 * width):
            layers += [
                nn.Conv2d(channels, out_channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
            ]
            channels = out_channels
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_features))
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.gate)
        return alpha * features + (1 - alpha) * self.net(images)


@register
class Sidetune(Method):
    name = "sidetune"
    Options = SidetuneOptions
    summary = "a side network on the image, blended with the frozen features through a sigmoid gate"

    def attach(self, model: TunedModel, options: SidetuneOptions) -> None:
        in_channels = model.backbone.pretrained_cfg.get("input_size", (3,))[0]
        model.side = SideNetwork(in_channels, model.backbone.num_features, options.width)
