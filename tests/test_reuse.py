"""Reusing frozen computation gives the same training as recomputing it."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import vptune
from vptune.data import prepare_task
from vptune.engine import TrainConfig, train
from vptune.engine.prefix_cache import first_tuned_block

from conftest import tiny_vit


def test_first_tuned_block_of_each_method():
    assert first_tuned_block(vptune.create(tiny_vit(), "partial-1", 3)) == 2
    assert first_tuned_block(vptune.create(tiny_vit(), "partial-2", 3)) == 1
    assert first_tuned_block(vptune.create(tiny_vit(), "vpt-deep", 3)) is None
    assert first_tuned_block(vptune.create(tiny_vit(), "bias", 3)) is None
    assert first_tuned_block(vptune.create(tiny_vit(), "full", 3)) is None


@pytest.mark.slow
def test_partial_k_with_cached_prefix_tokens_trains_the_same_tensors(tmp_path):
    prepare_task("digits", tmp_path / "data")
    common = dict(data=str(tmp_path / "data"), task="digits", backbone="vit_tiny_patch16_224", pretrained=False,
                  img_size=32, method="partial-2", epochs=2, batch_size=64, quiet=True)
    cached = train(TrainConfig(out=str(tmp_path / "cached"), **common))
    plain = train(TrainConfig(out=str(tmp_path / "plain"), cache_features=False, **common))
    assert cached["features_cached"] and not plain["features_cached"]
    a = load_file(str(tmp_path / "cached" / "task.safetensors"))
    b = load_file(str(tmp_path / "plain" / "task.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("backbone.blocks.10.") for k in a)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-4, msg=name)
    assert cached["val_top1"] == pytest.approx(plain["val_top1"], abs=0.011)
