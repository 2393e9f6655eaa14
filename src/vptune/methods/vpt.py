"""Visual Prompt Tuning: shallow, deep, deep block ranges, location and output ablations."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MethodError
from ..model import TunedModel
from ..prompts.vit import LOCATIONS, VitPrompt, check_vit
from .base import Method, register
from .linear import check_output


@dataclass
class VptOptions:
    num_prompts: int = 10
    prompt_dropout: float | None = None
    prompt_dim: int | None = None
    deep_blocks: tuple[int, int] | None = None
    location: str = "prepend"
    output: str = "cls"


class _Vpt(Method):
    Options = VptOptions
    deep: bool

    def validate(self, options: VptOptions) -> None:
        if not isinstance(options.num_prompts, int) or options.num_prompts < 0:
            raise MethodError(f"num_prompts must be a whole number >= 0, got {options.num_prompts!r}")
        if options.prompt_dropout is not None and not 0.0 <= options.prompt_dropout < 1.0:
            raise MethodError(f"prompt_dropout must be in [0, 1), got {options.prompt_dropout}")
        if options.prompt_dim is not None and options.prompt_dim < 1:
            raise MethodError(f"prompt_dim must be >= 1, got {options.prompt_dim}")
        if options.location not in LOCATIONS:
            raise MethodError(f"location '{options.location}' is not one of: {', '.join(LOCATIONS)}")
        if not self.deep and options.deep_blocks is not None:
            raise MethodError("deep_blocks is an option of vpt-deep; vpt-shallow prompts only block 1")
        if self.deep and options.location in ("prepend-pixel", "concat-channel"):
            raise MethodError(f"location '{options.location}' acts on the input image; use vpt-shallow")
        check_output(options.output)

    def attach(self, model: TunedModel, options: VptOptions) -> None:
        backbone = model.backbone
        check_vit(backbone)
        depth = len(backbone.blocks)
        first, last = self._block_range(options, depth)
        if options.prompt_dropout is None:
            options.prompt_dropout = 0.1 if self.deep else 0.0
        options.deep_blocks = (first, last) if self.deep else None
        if options.location == "add":
            # Added prompts sit on every patch token, so there is one per patch.
            options.num_prompts = backbone.patch_embed.num_patches
        model.prompt = VitPrompt(
            backbone,
            num_prompts=options.num_prompts,
            first_block=first - 1,
            last_block=last - 1,
            prompt_dim=options.prompt_dim,
            dropout=options.prompt_dropout,
            location=options.location,
        )
        model.output = options.output

    def _block_range(self, options: VptOptions, depth: int) -> tuple[int, int]:
        if not self.deep:
            return 1, 1
        if options.deep_blocks is None:
            return 1, depth
        try:
            first, last = (int(b) for b in options.deep_blocks)
        except (TypeError, ValueError):
            raise MethodError(f"deep_blocks must be two block numbers (i, j), got {options.deep_blocks!r}") from None
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
