"""LoRA through Hugging Face peft, injected into the timm backbone's linear layers."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MethodError
from ..model import FOLLOWS_TRAIN_MODE, TunedModel
from .base import Method, register


@dataclass
class LoraOptions:
    rank: int = 8
    alpha: float = 8.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("qkv",)


@register
class Lora(Method):
    name = "lora"
    Options = LoraOptions
    summary = "low-rank updates (peft LoRA) of the attention qkv projections, or other linear layers"

    def validate(self, options: LoraOptions) -> None:
        self.require_count("rank", options.rank, 1)
        if not 0.0 <= options.dropout < 1.0:
            raise MethodError(f"lora dropout must be in [0, 1), got {options.dropout}")
        if not options.target_modules:
            raise MethodError(
                "lora target_modules must be a list of module names (e.g. ['qkv', 'proj']), "
                f"got {options.target_modules!r}"
            )

    def attach(self, model: TunedModel, options: LoraOptions) -> None:
        try:
            from peft import LoraConfig, inject_adapter_in_model
            from peft.tuners.lora import LoraLayer
        except ImportError as exc:
            raise MethodError("method 'lora' needs Hugging Face peft: pip install 'vptune[extras]'") from exc
        options.target_modules = tuple(options.target_modules)
        config = LoraConfig(
            r=options.rank,
            lora_alpha=options.alpha,
            lora_dropout=options.dropout,
            target_modules=list(options.target_modules),
        )
        try:
            inject_adapter_in_model(config, model.backbone)
        except ValueError as exc:
            raise MethodError(
                f"lora target_modules {list(options.target_modules)} match no linear layer of "
                f"{model.config['arch']}; name layers it has (a ViT's or Swin's qkv, proj, fc1, fc2)"
            ) from exc
        for module in model.backbone.modules():
            if isinstance(module, LoraLayer):
                # LoRA's dropout acts in training although the backbone around it stays in eval mode.
                for dropout in module.lora_dropout.values():
                    setattr(dropout, FOLLOWS_TRAIN_MODE, True)
