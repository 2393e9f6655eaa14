"""LoRA through Hugging Face peft, injected into the timm backbone's linear layers."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import MethodError
from ..model import FOLLOWS_TRAIN_MODE, TunedModel
from .base import PRETRAINED_LRS, Method, register


@dataclass
class LoraOptions:
    rank: int = field(default=8, metadata={"help": "rank r of each low-rank update", "min": 1})
    alpha: float = field(default=8.0, metadata={"help": "scaling: updates are multiplied by alpha / rank"})
    dropout: float = field(
        default=0.0, metadata={"help": "dropout on the LoRA branch's input", "min": 0.0, "below": 1.0}
    )
    target_modules: tuple[str, ...] = field(
        default=("qkv",), metadata={"help": "names of the linear layers to adapt, e.g. [qkv, proj]"}
    )


@register
class Lora(Method):
    name = "lora"
    Options = LoraOptions
    summary = "low-rank updates (peft LoRA) of the attention qkv projections, or other linear layers"
    default_lr = 1e-3
    lr_grid = PRETRAINED_LRS
    changes_backbone = True

    def validate(self, options: LoraOptions) -> None:
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
