"""partial-k on ViTs: the tokens entering the first tuned block, computed once per dataset."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ..model import TunedModel
from ..prompts import backbone_family
from ..prompts.vit import stem_tokens
from .distributed import Dist
from .features import extract_features

# Cached tokens beyond this size are recomputed instead (bytes of float32).
MAX_CACHE_BYTES = 4 * 1024**3


def first_tuned_block(model: TunedModel) -> int | None:
    """Index of the first trainable ViT block when nothing before it trains, else None."""
    family = backbone_family(model.backbone)
    if family is None or family.name != "vit" or model.prompt is not None or model.side is not None:
        return None
    if model.output != "cls" or model.backbone_trains or model.reads_blocks:
        return None
    backbone = model.backbone
    trains = [any(p.requires_grad for p in block.parameters()) for block in backbone.blocks]
    if True not in trains or trains.index(True) == 0:
        return None
    after_blocks = ("blocks.", "norm.", "fc_norm.", "attn_pool.", "head")
    stem_trains = any(p.requires_grad for name, p in backbone.named_parameters() if not name.startswith(after_blocks))
    return None if stem_trains else trains.index(True)


class TunedTail(nn.Module):
    """The part of a TunedModel from block `first` on: tokens in, logits out."""

    def __init__(self, model: TunedModel, first: int) -> None:
        super().__init__()
        self.model = model
        self.first = first

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        backbone = self.model.backbone
        for block in backbone.blocks[self.first:]:
            tokens = block(tokens)
        return backbone.forward_head(backbone.norm(tokens), pre_logits=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.embed(tokens))


class _FrozenPrefix(nn.Module):
    """Images to the tokens entering block `first`, with `embed` as extract_features expects."""

    def __init__(self, model: TunedModel, first: int) -> None:
        super().__init__()
        self.model = model
        self.first = first

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        backbone = self.model.backbone
        x = stem_tokens(backbone, backbone.patch_embed(images))
        for block in backbone.blocks[:self.first]:
            x = block(x)
        return x


def prefix_tokens(
    model: TunedModel, first: int, dataset: Dataset, device: torch.device, ctx: Dist, *,
    batch_size: int, show: bool, desc: str,
) -> TensorDataset | None:
    """`(tokens, label)` pairs entering block `first`, or None when they would not fit in memory."""
    backbone = model.backbone
    tokens = backbone.patch_embed.num_patches + backbone.num_prefix_tokens
    if len(dataset) * tokens * backbone.embed_dim * 4 > MAX_CACHE_BYTES:
        return None
    return extract_features(_FrozenPrefix(model, first), dataset, device, ctx, batch_size=batch_size, show=show,
                            desc=desc)
