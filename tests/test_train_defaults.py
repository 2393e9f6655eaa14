"""Per-method default learning rates and training on a fraction of the training split."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from vptune.engine import TrainConfig, train
from vptune.tasks.classification import Classification, load_fraction
from vptune.errors import VptuneError
from vptune.methods import METHODS, get_method

# README "Default learning rates": the values the runs behind its table chose.
DOCUMENTED_LR = {
    "linear": 5e-3, "mlp-k": 5e-3, "vpt-shallow": 5e-3, "vpt-deep": 5e-3, "vpt-deep+bias": 5e-3, "sidetune": 5e-3,
    "full": 1e-4, "partial-k": 1e-4, "bias": 1e-3, "adapter": 1e-3, "lora": 1e-3, "ssf": 1e-3,
    "vfpt": 5e-3,
    "e2vpt": 1e-2,
    "adapter-plus": 2e-3, "adaptformer": 5e-3,
}


def default_lr(method: str) -> float:
    return get_method(method)[0].default_lr


def test_every_method_declares_its_documented_default_lr():
    assert {method.name: method.default_lr for method in METHODS} == DOCUMENTED_LR
    assert default_lr("partial-4") == DOCUMENTED_LR["partial-k"] and default_lr("mlp-3") == DOCUMENTED_LR["mlp-k"]
    assert default_lr("full") < default_lr("vpt-deep")


def test_fraction_is_a_seeded_class_stratified_subset(small_digits_root):
    whole = load_fraction(str(small_digits_root), "digits", "train800", 1.0, seed=0)
    half = load_fraction(str(small_digits_root), "digits", "train800", 0.5, seed=0)
    assert set(half.samples) < set(whole.samples)
    per_class, half_per_class = Counter(l for _, l in whole.samples), Counter(l for _, l in half.samples)
    assert all(abs(half_per_class[c] - n / 2) <= 0.5 for c, n in per_class.items())
    assert half.samples == load_fraction(str(small_digits_root), "digits", "train800", 0.5, seed=0).samples
    assert half.samples != load_fraction(str(small_digits_root), "digits", "train800", 0.5, seed=1).samples
    tiny = load_fraction(str(small_digits_root), "digits", "train800", 0.001, seed=0)
    assert Counter(l for _, l in tiny.samples) == {c: 1 for c in per_class}  # every class keeps one image


def test_fgvc_fraction_uses_the_shipped_subset_file(tmp_path):
    task = tmp_path / "birds"
    (task / "images").mkdir(parents=True)
    names = [f"{i}.jpg" for i in range(20)]
    for name in names:
        (task / "images" / name).touch()
    labels = {name: i % 2 for i, name in enumerate(names)}
    (task / "train.json").write_text(json.dumps(dict(list(labels.items())[:16])))
    (task / "val.json").write_text(json.dumps(dict(list(labels.items())[16:])))
    (task / "train_25.json").write_text(json.dumps({"0.jpg": 0, "5.jpg": 1, "8.jpg": 0}))
    shipped = load_fraction(str(tmp_path), "birds", "train", 0.25, seed=0)
    assert sorted(p.name for p, _ in shipped.samples) == ["0.jpg", "5.jpg", "8.jpg"]
    carved = load_fraction(str(tmp_path), "birds", "train", 0.5, seed=0)  # no train_50.json: subsampled
    assert len(carved.samples) == 8
    both = load_fraction(str(tmp_path), "birds", "train+val", 1.0, seed=0)
    assert len(both.samples) == 20


def test_run_without_lr_records_the_methods_default_and_trains_on_the_fraction(small_digits_root, tmp_path,
                                                                               monkeypatch):
    sizes = []
    original = Classification.dataset
    monkeypatch.setattr(Classification, "dataset", lambda *a, **k: sizes.append(len(ds := original(*a, **k))) or ds)
    config = TrainConfig(data=str(small_digits_root), task="digits", backbone="vit_tiny_patch16_224",
                         pretrained=False, img_size=32, method="linear", epochs=1, train_fraction=0.25,
                         out=str(tmp_path / "run"), quiet=True, cache_features=False)
    train(config)
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["lr"] == DOCUMENTED_LR["linear"] and recorded["train_fraction"] == 0.25
    assert sizes == [256 // 4, 64]  # a quarter of train800, all of val200


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(VptuneError, match="--train-fraction must lie in"):
        TrainConfig(data="d", task="t", train_fraction=fraction).validate()


def test_the_default_sweep_grid_tries_each_methods_declared_lrs():
    from vptune.experiments.sweep.grid import named_grid

    # README "Grids": prompt and head methods, and the methods that change the backbone.
    for method in ("linear", "mlp-3", "vpt-shallow", "vpt-deep", "vpt-deep+bias", "sidetune"):
        assert named_grid("default", method)[1]["lr"] == [1e-3, 5e-3, 1e-2]
    for method in ("full", "partial-2", "bias", "adapter", "lora", "ssf"):
        assert named_grid("default", method)[1]["lr"] == [1e-4, 5e-4, 1e-3]
