"""MLP-k: the `mlp` head kind with k layers on the frozen features (only the head trains)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MethodError
from ..model import TunedModel
from .base import Method, register


@dataclass
class MlpOptions:
    k: int = 3


@register
class Mlp(Method):
    name = "mlp-k"
    Options = MlpOptions
    summary = "a k-layer MLP head (k-1 hidden layers of the feature width, ReLU) on frozen features"

    def validate(self, options: MlpOptions) -> None:
        self.require_count("k", options.k, 1, "mlp-3")

    def attach(self, model: TunedModel, options: MlpOptions) -> None:
        if model.task_type != "classification":
            raise MethodError(f"mlp-{options.k} is a classification head; head '{model.head_kind}' "
                              "segments, so use method linear to train that head alone")
        model.set_head("mlp", {"k": options.k})
