"""Per-task files: round trips, self-description, and refusal of the wrong backbone."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

import vptune
from vptune.errors import CheckpointMismatchError, VptuneError
from vptune.persistence import read_description

from conftest import tiny_vit


@pytest.mark.parametrize("method,options", [
    ("vpt-deep", {"num_prompts": 3, "deep_blocks": (2, 3)}),
    ("vpt-shallow", {"num_prompts": 2, "prompt_dim": 8}),
    ("linear", {}),
])
def test_round_trip_gives_identical_logits(tmp_path, images, method, options):
    backbone = tiny_vit()
    model = vptune.create(backbone, method, 4, class_names=list("abcd"), **options).eval()
    with torch.no_grad():
        for p in model.trainable_parameters().values():
            p.add_(torch.randn_like(p))
    path = vptune.save(model, tmp_path / "task.safetensors")
    restored = vptune.load(path, backbone=tiny_vit()).eval()
    torch.testing.assert_close(restored(images), model(images), atol=0, rtol=0)
    assert restored.class_names == list("abcd")
    assert restored.config["options"] == model.config["options"]


def test_file_holds_only_tuned_tensors_and_a_description(tmp_path):
    model = vptune.create(tiny_vit(), "vpt-deep", 4, num_prompts=3)
    path = vptune.save(model, tmp_path / "task.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert sorted(handle.keys()) == ["head.bias", "head.weight", "prompt.embeddings"]
    description = read_description(path)
    assert description["method"] == "vpt-deep"
    assert description["backbone_fingerprint"] == model.backbone_fingerprint
    assert description["options"]["prompt_dropout"] == 0.1
    assert description["vptune_version"] == vptune.__version__


def test_other_weights_are_rejected(tmp_path):
    path = vptune.save(vptune.create(tiny_vit(), "vpt-deep", 4), tmp_path / "task.safetensors")
    other = tiny_vit()
    with torch.no_grad():
        other.blocks[0].attn.qkv.weight[0, 0] += 1e-3
    with pytest.raises(CheckpointMismatchError, match="was tuned on backbone"):
        vptune.load(path, backbone=other)


def test_other_architecture_is_rejected(tmp_path):
    path = vptune.save(vptune.create(tiny_vit(), "vpt-deep", 4), tmp_path / "task.safetensors")
    with pytest.raises(CheckpointMismatchError):
        vptune.load(path, backbone=tiny_vit(depth=2))


def test_random_init_backbone_by_name_is_rejected(tmp_path):
    model = vptune.create("vit_tiny_patch16_224", "linear", 2, pretrained=False, img_size=32)
    path = vptune.save(model, tmp_path / "task.safetensors")
    with pytest.raises(CheckpointMismatchError):
        vptune.load(path)  # a second random init is other weights


def test_foreign_files_are_rejected(tmp_path):
    bad = tmp_path / "not.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(VptuneError, match="not a safetensors file"):
        vptune.load(bad)
    with pytest.raises(VptuneError, match="does not exist"):
        vptune.load(tmp_path / "missing.safetensors")
