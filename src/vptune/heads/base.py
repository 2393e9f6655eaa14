"""The interface every head kind implements, and the name registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import HeadError
from ..option_fields import NoOptions, fill_options
from ..registry import Registry

HEADS: Registry["Head"] = Registry("head", HeadError)
register = HEADS.register


class SegmentationHead(nn.Module, ABC):
    """A head on the patch tokens of chosen blocks, returning per-pixel logits.

    `blocks(aux)` names the blocks it reads (0-based); the model hands their patch tokens as
    `(B, C, h, w)` maps (prefix and prompt tokens dropped) to `forward`, which returns logits
    `(B, num_classes, H, W)` at the input size `size`, and with `aux` also the auxiliary
    heads' logits (used only in training, weighted `aux_weight` in the loss).
    """

    aux_weight: float = 0.0

    @abstractmethod
    def blocks(self, aux: bool = False) -> tuple[int, ...]:
        """The blocks whose outputs `forward` reads."""

    @abstractmethod
    def forward(
        self, maps: dict[int, torch.Tensor], size: tuple[int, int], aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits at `size`, or `(logits, aux_logits)` with `aux`."""


class Head(ABC):
    """A head kind: its options, its task type and how it is built on a backbone.

    Subclasses set `name`, `task_type` (`classification` heads read the pooled features
    `(B, num_features)`, `segmentation` heads are a SegmentationHead), an `Options`
    dataclass, and implement `build`.
    """

    name: ClassVar[str]
    task_type: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    summary: ClassVar[str] = ""

    def parse_options(self, given: dict[str, Any]) -> Any:
        """Options dataclass from keyword options; unknown names or bad values raise HeadError."""
        options = fill_options(self.Options, given, "head", self.name, HeadError)
        self.validate(options)
        return options

    def validate(self, options: Any) -> None:
        """Raise HeadError for option values that cannot work."""

    @abstractmethod
    def build(self, backbone: nn.Module, num_classes: int, options: Any) -> nn.Module:
        """The head module for `backbone`; may fill options left to their automatic value."""


def available_heads() -> list[str]:
    """Registered head kinds."""
    return HEADS.names()


def get_head(name: str) -> Head:
    """The head kind called `name`; HeadError with a suggestion otherwise."""
    return HEADS.get(name)
