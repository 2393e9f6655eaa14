"""TunedModel: a frozen timm backbone, the tensors a method adds, and a classification head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .backbones import BackboneRef, fingerprint
from .data.transforms import InputSpec, input_spec
from .prompts import prompted_features

# Set on a module inside the frozen backbone that must still follow train()/eval(), e.g. LoRA dropout.
FOLLOWS_TRAIN_MODE = "vptune_follows_train_mode"


class TunedModel(nn.Module):
    """A backbone adapted to one task.

    `backbone` is the timm model (frozen, kept in eval mode unless the method trains it),
    `prompt` the method's prompt module (or None), `side` a module that blends the image into
    the features (or None) and `head` the classifier. A method decides which tensors train;
    `tuned_state_dict()` is what a per-task file stores. `backbone_fingerprint` may pass the
    backbone's known fingerprint (see backbones.fingerprint) to skip hashing its weights again.
    """

    def __init__(
        self,
        backbone: nn.Module,
        ref: BackboneRef,
        num_classes: int,
        *,
        method: str,
        options: dict[str, Any],
        class_names: list[str] | None = None,
        backbone_fingerprint: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone_fingerprint = backbone_fingerprint or fingerprint(backbone)
        self.register_module("prompt", None)
        self.register_module("side", None)
        self.head: nn.Module = nn.Linear(backbone.num_features, num_classes)
        self.output = "cls"
        self.backbone_trains = False
        self.grad_checkpointing = False
        self.config: dict[str, Any] = {
            "backbone": ref.id,
            "arch": ref.arch,
            "img_size": ref.img_size,
            "pretrained": ref.pretrained,
            "method": method,
            "options": options,
            "num_classes": num_classes,
            "class_names": class_names or [str(i) for i in range(num_classes)],
            # The protocol's preparation; training records its own run's (set_input_spec).
            "input": input_spec(backbone, "vtab").to_dict(),
        }

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]

    @property
    def class_names(self) -> list[str]:
        return self.config["class_names"]

    @property
    def input_spec(self) -> InputSpec:
        """How images are prepared for this model (the protocol it was trained and evaluated with);
        `model.input_spec.transform()` is its evaluation transform."""
        return InputSpec.from_dict(self.config["input"])

    def set_input_spec(self, spec: InputSpec) -> None:
        """Record the input pipeline a per-task file of this model carries."""
        self.config["input"] = spec.to_dict()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-head features `(B, num_features)`."""
        if self.prompt is None and self.output == "cls":
            # No prompts and the backbone's own pooling: exactly timm's forward.
            features = self.backbone.forward_head(self.backbone.forward_features(images), pre_logits=True)
        else:
            features = prompted_features(
                self.backbone, images, self.prompt, self.output, checkpoint=self.grad_checkpointing
            )
        if self.side is not None:
            features = self.side(images, features)
        return features

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each backbone block in the backward pass: less memory, about a third more time."""
        self.grad_checkpointing = enable
        if hasattr(self.backbone, "set_grad_checkpointing"):
            self.backbone.set_grad_checkpointing(enable)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images))

    def train(self, mode: bool = True) -> "TunedModel":
        super().train(mode)
        if not self.backbone_trains:
            # The frozen backbone never uses dropout or drop-path, even while the head trains.
            self.backbone.eval()
            for module in self.backbone.modules():
                if getattr(module, FOLLOWS_TRAIN_MODE, False):
                    module.train(mode)
        return self

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters the method trains, by name."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def tuned_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors that make this task: trainable parameters and their modules' persistent buffers."""
        trainable = self.trainable_parameters()
        owners = {
            name for name, module in self.named_modules()
            if any(p.requires_grad for p in module.parameters(recurse=False))
        }
        # keep_vars: parameters stay nn.Parameter, so buffers are the other entries.
        return {
            name: tensor.detach()
            for name, tensor in self.state_dict(keep_vars=True).items()
            if name in trainable or (not isinstance(tensor, nn.Parameter) and name.rpartition(".")[0] in owners)
        }
