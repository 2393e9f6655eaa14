"""Tiny timm backbones shared by the tests."""

from __future__ import annotations

import timm
import pytest
import torch

TINY = dict(img_size=32, patch_size=8, depth=3, embed_dim=64, num_heads=2, num_classes=0)


def tiny_vit(**overrides) -> torch.nn.Module:
    """A small random timm ViT; overrides select DINOv2/CLIP/avg-pool variants."""
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**TINY, **overrides}).eval()


VARIANTS = {
    "plain": {},
    "dinov2-registers": dict(reg_tokens=4, init_values=1e-5, no_embed_class=True),
    "clip-prenorm": dict(pre_norm=True, global_pool="token"),
    "avg-pool": dict(class_token=False, global_pool="avg", fc_norm=True),
}


@pytest.fixture(params=sorted(VARIANTS))
def variant_vit(request) -> torch.nn.Module:
    return tiny_vit(**VARIANTS[request.param])


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
