"""Linear probing: only the classification head trains."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import TunedModel
from ..prompts import check_output_applies
from ..prompts.vit import OUTPUTS
from .base import Method, register


@dataclass
class LinearOptions:
    output: str = field(default="cls", metadata={"help": "features the head reads", "choices": OUTPUTS})


@register
class Linear(Method):
    name = "linear"
    Options = LinearOptions
    summary = "train the linear head on frozen features"

    def attach(self, model: TunedModel, options: LinearOptions) -> None:
        check_output_applies(model.backbone, options.output)
        model.output = options.output
