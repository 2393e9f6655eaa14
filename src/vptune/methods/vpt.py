"""Visual Prompt Tuning: shallow, deep, deep block ranges, location and output ablations.

ViTs take prompt tokens, Swin backbones prompts per window (prompts/swin.py) and ConvNets a
learnable pixel border (prompts/conv.py), where `num_prompts` is the border width in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import MethodError
from ..model import TunedModel
from ..prompts import BorderPrompt, SwinPrompt, VitPrompt, check_output_applies, require_family
from ..prompts.vit import LOCATIONS, OUTPUTS
from .base import Method, register
from .bias import train_biases

# Prompt tokens (ViT, Swin) and border pixels (ConvNets) when num_prompts is not given.
DEFAULT_PROMPTS = {"vit": 10, "swin": 10, "conv": 5}


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
                                        "default 10 on a ViT or Swin, 5 on a ConvNet", "min": 0})
    prompt_dropout: float | None = field(
        default=None, metadata={"help": "dropout on the prompts; default 0.1 deep, 0 shallow", "min": 0.0, "below": 1.0})
    prompt_dim: int | None = field(
        default=None, metadata={"help": "learn prompts of this width, projected to the model's", "min": 1})
    deep_blocks: tuple[int, int] | None = field(
        default=None, metadata={"help": "prompt only blocks I..J (1-based, inclusive), written I-J; default every block",
                                "parse": parse_block_range})
    location: str = field(default="prepend", metadata={"help": "where prompts enter", "choices": LOCATIONS})
    output: str = field(default="cls", metadata={"help": "features the head reads", "choices": OUTPUTS})


class _Vpt(Method):
    Options = VptOptions
    deep: bool

    def validate(self, options: VptOptions) -> None:
        if not self.deep and options.deep_blocks is not None:
            raise MethodError("deep_blocks is an option of vpt-deep; vpt-shallow prompts only block 1")
        if self.deep and options.location in ("prepend-pixel", "concat-channel"):
            raise MethodError(f"location '{options.location}' acts on the input image; use vpt-shallow")

    def attach(self, model: TunedModel, options: VptOptions) -> None:
        backbone = model.backbone
        families = ("vit", "swin") if self.deep else ("vit", "swin", "conv")
        family = require_family(backbone, self.name, families, "ConvNet prompts are an input border: use vpt-shallow")
        check_output_applies(backbone, options.output)
        if family != "vit" and (options.deep_blocks, options.prompt_dim, options.location) != (None, None, "prepend"):
            raise MethodError(
                f"deep_blocks, prompt_dim and location are ViT options; {self.name} on "
                f"{type(backbone).__name__} takes num_prompts and prompt_dropout"
            )
        if options.num_prompts is None:
            options.num_prompts = DEFAULT_PROMPTS[family]
        if options.prompt_dropout is None:
            options.prompt_dropout = 0.1 if self.deep else 0.0
        if family == "conv":
            if options.prompt_dropout:
                raise MethodError("prompt_dropout acts on prompt tokens; a ConvNet's border prompt has none")
            model.prompt = BorderPrompt(backbone, width=options.num_prompts, image_size=_image_size(model))
        elif family == "swin":
            model.prompt = SwinPrompt(
                backbone, num_prompts=options.num_prompts, deep=self.deep, dropout=options.prompt_dropout
            )
        else:
            model.prompt = self._vit_prompt(backbone, options)
        model.output = options.output

    def _vit_prompt(self, backbone: nn.Module, options: VptOptions) -> VitPrompt:
        first, last = self._block_range(options, len(backbone.blocks))
        options.deep_blocks = (first, last) if self.deep else None
        if options.location == "add":
            # Added prompts sit on every patch token, so there is one per patch.
            options.num_prompts = backbone.patch_embed.num_patches
        return VitPrompt(
            backbone,
            num_prompts=options.num_prompts,
            first_block=first - 1,
            last_block=last - 1,
            prompt_dim=options.prompt_dim,
            dropout=options.prompt_dropout,
            location=options.location,
        )

    def _block_range(self, options: VptOptions, depth: int) -> tuple[int, int]:
        if not self.deep:
            return 1, 1
        if options.deep_blocks is None:
            return 1, depth
        first, last = options.deep_blocks
        if not 1 <= first <= last <= depth:
            raise MethodError(
                f"deep_blocks {options.deep_blocks} must satisfy 1 <= i <= j <= {depth} (blocks are 1-based)"
            )
        return first, last


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
