"""Backbone families: what each kind of timm backbone offers prompts, registered by name.

A family recognises its backbones (`matches`), computes their pre-head features with a
prompt in place, and builds VPT's prompts for them. `backbone_family` picks a backbone's
family by asking each registered family in turn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import MethodError
from ..registry import Registry

# Features of a batch whose samples belong to several tasks: (images, [(task's prompts, its rows)]) -> features.
BatchedForward = Callable[[torch.Tensor, Sequence[tuple[Any, torch.Tensor]]], torch.Tensor]


@dataclass(frozen=True)
class PromptSettings:
    """VPT's prompt settings, as the method passes them to a family and the family returns them built.

    `deep_blocks` is a 1-based inclusive block range (None: every block); `image_size` the
    input the prompts frame; `method` names the method in error messages.
    """

    method: str
    num_prompts: int
    deep: bool
    dropout: float
    deep_blocks: tuple[int, int] | None
    prompt_dim: int | None
    location: str
    image_size: tuple[int, int]


class BackboneFamily(ABC):
    """A kind of timm backbone: `name` (`vit`), `label` (`ViT`) and what prompts can do with it.

    `default_prompts` is VPT's prompt count when none is given; `reads_tokens` says whether
    the final-output ablations (pools over tokens) apply; `reads_blocks` whether a head can
    read each block's patch tokens (`block_maps`).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    default_prompts: ClassVar[int]
    reads_tokens: ClassVar[bool] = False
    reads_blocks: ClassVar[bool] = False

    @abstractmethod
    def matches(self, backbone: nn.Module) -> bool:
        """Whether `backbone` belongs to this family."""

    @abstractmethod
    def features(
        self, backbone: nn.Module, images: torch.Tensor, prompt: nn.Module | None, output: str, *, checkpoint: bool
    ) -> torch.Tensor:
        """Pre-head features `(B, num_features)` with `prompt` (or none) in place; `checkpoint` saves memory."""

    @abstractmethod
    def vpt_prompt(self, backbone: nn.Module, settings: PromptSettings) -> tuple[nn.Module, PromptSettings]:
        """VPT's prompt module for `backbone` and the settings as built (defaults resolved); MethodError
        for settings this family cannot take."""

    def blocks(self, backbone: nn.Module) -> list[nn.Module]:
        """The transformer blocks, in forward order (where adapters go)."""
        raise MethodError(f"{type(backbone).__name__} is a {self.label}, which has no transformer blocks")

    def block_maps(
        self, backbone: nn.Module, images: torch.Tensor, prompt: nn.Module | None, blocks: Sequence[int], *,
        checkpoint: bool,
    ) -> list[torch.Tensor]:
        """Patch tokens leaving each of `blocks` as `(B, C, h, w)` maps (families that `reads_blocks`)."""
        raise MethodError(f"{type(backbone).__name__} is a {self.label}; its blocks' patch tokens cannot be read")

    def batched_forward(self, backbone: nn.Module) -> BatchedForward | None:
        """The forward that runs a batch of several tasks' samples through one pass of `backbone`, each
        sample with its task's prompts, or None when this family (or this backbone) has none."""
        return None

    def refuse_vit_options(self, backbone: nn.Module, settings: PromptSettings) -> None:
        """MethodError when `settings` use options only ViT prompts have."""
        if (settings.deep_blocks, settings.prompt_dim, settings.location) != (None, None, "prepend"):
            raise MethodError(
                f"deep_blocks, prompt_dim and location are ViT options; {settings.method} on "
                f"{type(backbone).__name__} takes num_prompts and prompt_dropout"
            )


FAMILIES: Registry[BackboneFamily] = Registry("backbone family", MethodError)


def backbone_family(backbone: nn.Module) -> BackboneFamily | None:
    """The registered family `backbone` belongs to, or None."""
    return next((family for family in FAMILIES if family.matches(backbone)), None)
