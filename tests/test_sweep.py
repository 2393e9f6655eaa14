"""Sweeps: grid points, reuse of frozen features across trials, choice by validation."""

from __future__ import annotations

import pytest

from vptune.data import prepare_task
from vptune.engine import TrainConfig
from vptune.engine import features
from vptune.errors import VptuneError
from vptune.experiments.sweep import best_point, grid_points, run_grid


def test_grid_points_cover_every_combination():
    points = grid_points({"lr": [1, 2], "weight_decay": [0, 1, 2]})
    assert len(points) == 6 and {"lr": 2, "weight_decay": 1} in points


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep-data")
    prepare_task("digits", root)
    return root


@pytest.mark.slow
def test_linear_grid_extracts_features_once_and_matches_naive_trials(digits_root, tmp_path, monkeypatch):
    calls = []
    original = features.extract_features
    monkeypatch.setattr(features, "extract_features", lambda *a, **k: calls.append(1) or original(*a, **k))
    base = TrainConfig(data=str(digits_root), task="digits", backbone="vit_tiny_patch16_224", pretrained=False,
                       img_size=32, method="linear", epochs=1, quiet=True)
    grid = {"lr": [1e-3, 1e-2], "weight_decay": [0.0, 1e-3]}
    reused = run_grid(base, grid, tmp_path / "reused")
    assert len(calls) == 2  # train800 and val200, once for all four trials
    naive_grid = {"lr": [1e-3], "weight_decay": [0.0, 1e-3]}
    naive = run_grid(TrainConfig(**{**base.to_dict(), "cache_features": False}), naive_grid, tmp_path / "naive")
    assert len(calls) == 2
    for a, b in zip(reused, naive):
        assert a["val_top1"] == pytest.approx(b["val_top1"], abs=0.011)
    assert best_point(reused)["val_top1"] == max(r["val_top1"] for r in reused)


def test_grid_rejects_unknown_settings(digits_root, tmp_path):
    base = TrainConfig(data=str(digits_root), task="digits")
    with pytest.raises(VptuneError, match="not training settings"):
        run_grid(base, {"learning_rate": [1.0]}, tmp_path)
