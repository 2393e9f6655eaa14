"""E2VPT (Han et al., ICCV 2023): VPT-Deep visual prompts plus key-value prompts in every attention.

Each block appends `kv_prompts` learnable keys and values to its attention's (no query rows,
so the output keeps its length) and takes `num_prompts` visual prompts of its own, as in
VPT-Deep (prompts/e2vpt.py). `prune` adds the paper's pruning and rewinding as a second stage
of the same run (methods/e2vpt_prune.py, engine/trainer.py). On Swin the key-value prompts
enter every window's attention (prompts/swin_e2vpt.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from timm.layers import Attention
from timm.models.vision_transformer import Block
from torch import nn

from ..errors import MethodError
from ..model import TunedModel
from ..prompts import require_family
from ..prompts.e2vpt import E2vptPrompt
from ..prompts.prototypes import init_option, init_samples_option
from ..prompts.swin_e2vpt import E2vptSwinPrompt
from .base import Method, SharedPart, register
from .e2vpt_prune import prune_and_rewind

PRUNING = ("none", "token", "segment")


@dataclass
class E2vptOptions:
    num_prompts: int = field(default=10, metadata={"help": "visual prompt tokens per block", "min": 1})
    kv_prompts: int = field(default=5, metadata={"help": "key-value prompts per attention", "min": 1})
    prompt_dropout: float = field(
        default=0.0, metadata={"help": "dropout on the visual prompts", "min": 0.0, "below": 1.0})
    prune: str = field(
        default="none",
        metadata={"help": "after training, prune visual prompt tokens (token) or tokens then their segments "
                          "(segment) by importance, rewind and train again", "choices": PRUNING},
    )
    prune_fraction: float = field(
        default=0.5,
        metadata={"help": "fraction of visual prompt tokens pruned (segment: also of each kept token's segments)",
                  "min": 0.0, "below": 1.0},
    )
    segments: int = field(
        default=16, metadata={"help": "equal segments a prompt token is split into for segment pruning", "min": 1})
    # Prototypes fill the visual prompts; the key-value prompts keep their uniform init.
    init: str = init_option()
    init_samples: int = init_samples_option()


@register
class E2vpt(Method):
    name = "e2vpt"
    summary = "key-value prompts in every attention plus VPT-Deep visual prompts; optional prompt pruning"
    Options = E2vptOptions
    # docs/learning-rates.md: on the offline digits run 1e-2 and 2e-2 tied (0.95), ahead of 5e-3 (0.935).
    default_lr = 1e-2
    lr_grid = (5e-3, 1e-2, 2e-2)

    def attach(self, model: TunedModel, options: E2vptOptions) -> None:
        backbone = model.backbone
        family = require_family(backbone, self.name, ("vit", "swin"), "key-value prompts enter a transformer's "
                                "attention; a ConvNet has none")
        if family.name == "vit":
            plain = all(type(b) is Block and type(b.attn) is Attention and type(b.attn.qkv) is nn.Linear
                        for b in backbone.blocks)
            if not plain:
                raise MethodError(f"method 'e2vpt' needs timm's plain ViT Block and Attention in every block of "
                                  f"{type(backbone).__name__}")
        # A Swin stage's width is the first stage's times a power of two, so dividing the first divides all.
        width = backbone.embed_dim if family.name == "vit" else backbone.layers[0].blocks[0].dim
        segments = None
        if options.prune != "none":
            segments = options.segments if options.prune == "segment" else 1
            if width % segments:
                raise MethodError(f"segments {options.segments} must divide the embedding width {width}")
        prompt = E2vptPrompt if family.name == "vit" else E2vptSwinPrompt
        model.prompt = prompt(backbone, num_prompts=options.num_prompts, kv_prompts=options.kv_prompts,
                              dropout=options.prompt_dropout, segments=segments)

    def stages(self, model: TunedModel) -> int:
        """Pruning adds a second stage: prune, rewind, train again."""
        return 1 if model.config["options"]["prune"] == "none" else 2

    def start_stage(self, model: TunedModel, stage: int, initial: dict[str, torch.Tensor],
                    losses: Callable[[], Iterator[torch.Tensor]]) -> dict[str, Any]:
        return {"stage": stage, **prune_and_rewind(model, initial, losses)}

    def shared_part(self, model: TunedModel) -> SharedPart | None:
        """On a ViT, visual and key-value prompts join a batch shared with other tasks' samples; Swin has no
        forward shared by several tasks' samples."""
        if not model.prompt.shares_batch:
            return None
        return SharedPart(model.prompt, model.classify)
