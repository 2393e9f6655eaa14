"""MLP-k: the `mlp` head kind with k layers on the frozen features (only the head trains)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import MethodError
from ..model import TunedModel
from .base import Method, register


@dataclass
class MlpOptions:
    k: int = field(default=3, metadata={"help": "linear layers in all, as mlp-k names them", "min": 1})


@register
class Mlp(Method):
    name = "mlp-k"
    Options = MlpOptions
    summary = "a k-layer MLP head (k-1 hidden layers of the feature width, ReLU) on frozen features"

    def attach(self, model: TunedModel, options: MlpOptions) -> None:
        if model.reads_blocks:
            raise MethodError(f"mlp-{options.k} is a classification head; head '{model.head_kind}' "
                              "segments, so use method linear to train that head alone")
        model.set_head("mlp", {"k": options.k})
