"""Backbone ids: timm names, checkpoints, and clear errors."""

from __future__ import annotations

import pytest
import timm
import torch

import vptune
from vptune.errors import BackboneError

from conftest import tiny_vit


def test_unknown_backbone_suggests_timm_name():
    with pytest.raises(BackboneError, match="did you mean vit_base_patch16_224"):
        vptune.create("vit_base_patch16_22", "linear", 2, pretrained=False)


def test_checkpoint_needs_arch(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(tiny_vit().state_dict(), path)
    with pytest.raises(BackboneError, match="arch"):
        vptune.create(str(path), "linear", 2)


def test_checkpoint_with_wrapper_prefix_loads_strictly(tmp_path):
    source = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=0)
    path = tmp_path / "w.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = vptune.create(str(path), "linear", 2, arch="vit_tiny_patch16_224", img_size=32)
    loaded = model.backbone.state_dict()
    assert loaded.keys() == source.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())


def test_checkpoint_with_extra_keys_is_refused_unless_allowed(tmp_path):
    state = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=0).state_dict()
    state["decoder.weight"] = torch.zeros(2)
    path = tmp_path / "mae.pth"
    torch.save({"model": state}, path)
    with pytest.raises(BackboneError, match="unexpected decoder.weight"):
        vptune.create(str(path), "linear", 2, arch="vit_tiny_patch16_224", img_size=32)
    model = vptune.create(str(path), "linear", 2, arch="vit_tiny_patch16_224", img_size=32, allow_keys=("decoder.",))
    assert model.backbone.embed_dim == 192
