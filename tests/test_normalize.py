"""--normalize backbone|imagenet|none: the input pipeline's mean/std, recorded by the run and its task file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.transforms.v2 import functional as F

from vptune.cli.main import main
from vptune.data import InputSpec, input_spec
from vptune.persistence import read_description
from vptune.experiments.sweep.trials import trial_id

from conftest import TINY_CLI, assert_one_line_error, tiny_vit

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's ImageNet statistics


def _image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8))


def _expected(image: Image.Image, mean, std) -> torch.Tensor:
    """VTAB preparation written out: bilinear resize to 32 x 32 (no antialias), /255, then (x - mean) / std."""
    pixels = F.resize(torch.from_numpy(np.array(image)).permute(2, 0, 1), [32, 32], antialias=False).float() / 255
    return (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


@pytest.mark.parametrize("rule", ["backbone", "imagenet", "none"])
def test_each_rule_normalises_with_its_mean_and_std(rule):
    backbone = tiny_vit()
    own = (backbone.pretrained_cfg["mean"], backbone.pretrained_cfg["std"])
    mean, std = {"backbone": own, "imagenet": IMAGENET, "none": ((0, 0, 0), (1, 1, 1))}[rule]
    spec = input_spec(backbone, "vtab", rule)
    assert spec.mean == pytest.approx(mean) and spec.std == pytest.approx(std)
    image = _image()
    assert torch.allclose(spec.transform()(image), _expected(image, mean, std), atol=1e-6)


def test_the_default_is_the_backbones_own_statistics():
    backbone = tiny_vit()
    assert input_spec(backbone, "vtab") == input_spec(backbone, "vtab", "backbone")


def test_train_records_the_rule_and_the_task_file_predicts_with_it(small_digits_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(small_digits_root), "--task", "digits", *TINY_CLI, "--method", "linear",
                 "--epochs", "1", "--normalize", "imagenet", "--out", str(out), "--quiet"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["normalize"] == "imagenet"
    recorded = json.loads((out / "summary.json").read_text())["normalize"]
    assert recorded["rule"] == "imagenet"
    assert recorded["mean"] == pytest.approx(IMAGENET[0]) and recorded["std"] == pytest.approx(IMAGENET[1])
    spec = InputSpec.from_dict(read_description(out / "task.safetensors")["input"])
    image = _image()
    assert torch.allclose(spec.transform()(image), _expected(image, *IMAGENET), atol=1e-6)


def test_an_unknown_rule_is_one_line(small_digits_root, tmp_path, capsys):
    code = main(["train", "--data", str(small_digits_root), "--task", "digits", *TINY_CLI, "--normalize", "inception",
                 "--out", str(tmp_path / "run")])
    assert_one_line_error(code, capsys.readouterr().err, "normalize 'inception'", "backbone, imagenet, none")
    assert not (tmp_path / "run").exists()


def test_trials_of_earlier_sweeps_keep_their_ids_at_the_default():
    config = {"task": "kitti", "lr": 0.1, "out": "x"}
    assert trial_id({**config, "normalize": "backbone"}) == trial_id(config)
    assert trial_id({**config, "normalize": "imagenet"}) != trial_id(config)
