"""train -> eval -> predict through the CLI on tiny trees in the ADE20K and Pascal VOC layouts."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vptune.cli.main import main
from vptune.segmentation.classes import ADE20K_CLASSES, VOC_CLASSES
from vptune.engine.evaluate import run_config

from conftest import TINY_CLI

RUN = [*TINY_CLI, "--method", "vpt-deep", "--num-prompts", "2", "--epochs", "1", "--batch-size", "2",
       "--head", "setr-naive", "--head-option", "channels=8", "--quiet"]


def write_pair(image: Path, mask: Path, labels: np.ndarray, seed: int) -> None:
    """A random RGB jpg and its single-channel png mask `labels` (H, W)."""
    rgb = np.random.default_rng(seed).integers(0, 256, (*labels.shape, 3), dtype=np.uint8)
    image.parent.mkdir(parents=True, exist_ok=True)
    mask.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(image, quality=90)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(mask)


def ade_labels(seed: int, height: int = 40, width: int = 48) -> np.ndarray:
    """ADE20K annotation values: 0 ("other", ignored) and the 150 classes 1..150, both ends included."""
    labels = np.random.default_rng(seed).integers(0, 151, (height, width))
    labels[0, :3] = (0, 1, 150)
    return labels


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ade")
    dataset = root / "ade20k" / "ADEChallengeData2016"
    for split, count in (("training", 4), ("validation", 2)):
        for index in range(count):
            stem = f"ADE_{split[:5]}_{index:08d}"
            write_pair(dataset / "images" / split / f"{stem}.jpg", dataset / "annotations" / split / f"{stem}.png",
                       ade_labels(index + 10 * (split == "validation")), index)
    return root


def run_cli(args: list[str]) -> str:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(args) == 0
    return stdout.getvalue()


def test_ade20k_train_eval_predict(ade_root, tmp_path):
    run_dir = tmp_path / "run"
    run_cli(["train", "--data", str(ade_root), "--task", "ade20k", *RUN, "--out", str(run_dir)])
    config = run_config(run_dir)
    assert (config.protocol, config.train_split, config.eval_split) == ("ade20k", "training", "validation")
    # The segmentation recipe fills what the flags leave unset.
    assert (config.optimizer, config.lr, config.weight_decay, config.warmup_epochs) == ("sgd", 1e-3, 0.0, 0.0)
    assert (config.schedule, config.min_lr, config.head_lr_multiplier) == ("poly", 1e-4, 10.0)

    printed = run_cli(["eval", str(run_dir), "--split", "validation"]).splitlines()
    result = json.loads(printed[-1])
    assert result["n"] == 2 and 0.0 <= result["mIoU"] <= 1.0 and 0.0 <= result["aAcc"] <= 1.0
    assert list(result["IoU"]) == list(ADE20K_CLASSES) and len(ADE20K_CLASSES) == 150
    table = "\n".join(printed[:-1])
    assert "mIoU" in table and "aAcc" in table and f"  {ADE20K_CLASSES[149]}  " in table

    image = next((ade_root / "ade20k" / "ADEChallengeData2016" / "images" / "validation").glob("*.jpg"))
    run_cli(["predict", str(run_dir), str(image), "--out-dir", str(tmp_path / "pred")])
    mask = Image.open(tmp_path / "pred" / f"{image.stem}_mask.png")
    overlay = Image.open(tmp_path / "pred" / f"{image.stem}_overlay.png")
    assert mask.size == overlay.size == Image.open(image).size and overlay.mode == "RGB"
    assert int(np.asarray(mask).max()) <= 149  # reduced ids 0..149; "other" is never predicted


def test_voc_train_eval(tmp_path):
    dataset = tmp_path / "data" / "voc" / "VOCdevkit" / "VOC2012"
    names = {"train": ["2007_000001", "2007_000002"], "val": ["2007_000003"]}
    for split, ids in names.items():
        for seed, name in enumerate(ids):
            labels = np.random.default_rng(seed).integers(0, 21, (36, 44))
            labels[:2] = 255  # VOC's object borders: ignored
            write_pair(dataset / "JPEGImages" / f"{name}.jpg", dataset / "SegmentationClass" / f"{name}.png",
                       labels, seed)
        lists = dataset / "ImageSets" / "Segmentation"
        lists.mkdir(parents=True, exist_ok=True)
        (lists / f"{split}.txt").write_text("\n".join(ids) + "\n")
    run_dir = tmp_path / "run"
    run_cli(["train", "--data", str(tmp_path / "data"), "--task", "voc", *RUN, "--out", str(run_dir)])
    result = json.loads(run_cli(["eval", str(run_dir), "--split", "val", "--quiet"]))
    assert result["n"] == 1 and list(result["IoU"]) == list(VOC_CLASSES) and 0.0 <= result["mIoU"] <= 1.0
