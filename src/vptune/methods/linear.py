"""Linear probing: only the classification head trains."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MethodError
from ..model import TunedModel
from ..prompts import check_output_applies
from ..prompts.vit import OUTPUTS
from .base import Method, register


@dataclass
class LinearOptions:
    output: str = "cls"


def check_output(output: str) -> None:
    """Raise MethodError unless `output` is one of the final-output choices."""
    if output not in OUTPUTS:
        raise MethodError(f"output '{output}' is not one of: {', '.join(OUTPUTS)}")


@register
class Linear(Method):
    name = "linear"
    Options = LinearOptions
    summary = "train the linear head on frozen features"

    def validate(self, options: LinearOptions) -> None:
        check_output(options.output)

    def attach(self, model: TunedModel, options: LinearOptions) -> None:
        check_output_applies(model.backbone, options.output)
        model.output = options.output
