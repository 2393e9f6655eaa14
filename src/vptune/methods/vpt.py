"""Visual Prompt Tuning: shallow, deep, deep block ranges, location and output ablations.

ViTs take prompt tokens, Swin backbones prompts per window (prompts/swin.py) and ConvNets a
learnable pixel border (prompts/conv.py), where `num_prompts` is the border width in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import MethodError
from ..model import TunedModel
from ..prompts import PromptSettings, check_output_applies, require_family
from ..prompts.prototypes import init_option, init_samples_option
from ..prompts.vit import LOCATIONS, OUTPUTS
from .base import Method, SharedPart, register
from .bias import train_biases


def parse_block_range(value: Any) -> list[int]:
    """A `deep_blocks` range from text or a pair: '1-6', '1,6' or [1, 6] -> [1, 6]."""
    parts = value.replace(",", "-").split("-") if isinstance(value, str) else value
    if isinstance(parts, (list, tuple)) and len(parts) == 2:
        try:
            return [int(p) for p in parts]
        except (TypeError, ValueError):
            pass
    raise MethodError(f"--deep-blocks takes I-J (e.g. 1-6), got '{value}'")


@dataclass
class VptOptions:
    num_prompts: int | None = field(
        default=None, metadata={"help": "prompt tokens per block (ConvNets: border width in pixels); "
                                        "default 10 on a ViT or Swin, 5 on a ConvNet", "min": 1})
    prompt_dropout: float | None = field(
        default=None,
        metadata={"help": "dropout on the prompts; default 0.1 deep, 0 shallow", "min": 0.0, "below": 1.0},
    )
    prompt_dim: int | None = field(
        default=None, metadata={"help": "learn prompts of this width, projected to the model's", "min": 1})
    deep_blocks: tuple[int, int] | None = field(
        default=None,
        metadata={"help": "prompt only blocks I..J (1-based, inclusive), written I-J; default every block",
                  "parse": parse_block_range},
    )
    location: str = field(default="prepend", metadata={"help": "where prompts enter", "choices": LOCATIONS})
    output: str = field(default="cls", metadata={"help": "features the head reads", "choices": OUTPUTS})
    init: str = init_option()
    init_samples: int = init_samples_option()


class _Vpt(Method):
    Options = VptOptions
    deep: bool

    def validate(self, options: VptOptions) -> None:
        if not self.deep and options.deep_blocks is not None:
            raise MethodError("deep_blocks is an option of vpt-deep; vpt-shallow prompts only block 1")
        if self.deep and options.location in ("prepend-pixel", "concat-channel"):
            raise MethodError(f"location '{options.location}' acts on the input image; use vpt-shallow")
        if options.init != "uniform" and (options.location != "prepend" or options.prompt_dim is not None):
            raise MethodError(f"init '{options.init}' starts prepended prompt tokens of the model's width from token "
                              "prototypes; use it with location=prepend and no prompt_dim, or use init=uniform")

    def attach(self, model: TunedModel, options: VptOptions) -> None:
        backbone = model.backbone
        families = ("vit", "swin") if self.deep else ("vit", "swin", "conv")
        family = require_family(backbone, self.name, families, "ConvNet prompts are an input border: use vpt-shallow")
        check_output_applies(backbone, options.output)
        asked = PromptSettings(
            method=self.name,
            num_prompts=family.default_prompts if options.num_prompts is None else options.num_prompts,
            deep=self.deep,
            dropout=(0.1 if self.deep else 0.0) if options.prompt_dropout is None else options.prompt_dropout,
            deep_blocks=options.deep_blocks,
            prompt_dim=options.prompt_dim,
            location=options.location,
            image_size=_image_size(model),
        )
        model.prompt, built = family.vpt_prompt(backbone, asked)
        # Recorded as built, so the per-task file rebuilds exactly these prompts.
        options.num_prompts, options.prompt_dropout = built.num_prompts, built.dropout
        options.deep_blocks = built.deep_blocks
        model.output = options.output

    def shared_part(self, model: TunedModel) -> SharedPart | None:
        """Prompts the backbone's batched forward can take per sample (prepended ViT tokens) join it."""
        if self.changes_backbone or model.output != "cls" or not model.prompt.shares_batch:
            return None
        return SharedPart(model.prompt, model.classify)


@register
class VptShallow(_Vpt):
    name = "vpt-shallow"
    deep = False
    summary = "prompt tokens inserted once, before block 1"


@register
class VptDeep(_Vpt):
    name = "vpt-deep"
    deep = True
    summary = "new prompt tokens before every block (or a block range)"


@register
class VptDeepBias(VptDeep):
    name = "vpt-deep+bias"
    summary = "vpt-deep prompts plus every bias term of the backbone (the paper's segmentation combination)"
    # The prompts set the step size (as vpt-deep); the biases it trains make it change the backbone.
    changes_backbone = True

    def attach(self, model: TunedModel, options: VptOptions) -> None:
        super().attach(model, options)
        train_biases(model.backbone)


def _image_size(model: TunedModel) -> tuple[int, int]:
    # The size the border frames: the model's img_size, else the backbone's pretrained input size.
    size = model.config["img_size"]
    if size is None:
        return tuple(model.backbone.pretrained_cfg.get("input_size", (3, 224, 224))[-2:])
    return (size, size) if isinstance(size, int) else tuple(size)
