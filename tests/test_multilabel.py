"""Multi-label classification, the third task type: its layout, mAP against scikit-learn, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import average_precision_score

from vptune.cli.main import main
from vptune.data import load_rgb
from vptune.engine import TrainConfig, train
from vptune.engine.evaluate import load_run_model, run_config
from vptune.errors import DataError
from vptune.tasks import task_type_of
from vptune.tasks.multilabel import average_precision, load_multilabel_split, multilabel_metrics

from conftest import DIGIT_NAMES, TINY_CLI, assert_one_line_error

# Each digit image carries two labels: its digit and its parity.
CLASSES = DIGIT_NAMES + ["even", "odd"]
SPLITS = {"train": "train800", "val": "val200", "test": "test"}


@pytest.fixture(scope="module")
def multilabel_root(small_digits_root, tmp_path_factory) -> Path:
    """Digits as a multi-label task (`multilabel` marker, `path digit,parity` lines)."""
    root = tmp_path_factory.mktemp("multilabel-data")
    task = root / "parity"
    task.mkdir()
    (task / "images").symlink_to((small_digits_root / "digits" / "images").resolve())
    (task / "multilabel").touch()
    (task / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for split, source in SPLITS.items():
        lines = []
        for line in (small_digits_root / "digits" / f"{source}.txt").read_text().splitlines():
            path, digit = line.rsplit(maxsplit=1)
            lines.append(f"{path} {digit},{10 + int(digit) % 2}")
        (task / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_average_precision_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = rng.random(40) < 0.3
        truth[0] = True
        scores = np.round(rng.random(40), 1)  # many tied scores
        expected = average_precision_score(truth, scores)
        assert average_precision(torch.from_numpy(scores), torch.from_numpy(truth)) == pytest.approx(expected)


def test_map_is_the_mean_over_classes_present():
    rng = np.random.default_rng(1)
    targets = (rng.random((30, 5)) < 0.4).astype(np.float32)
    targets[:, 4] = 0  # a class no image has is left out of the mean
    logits = rng.normal(size=(30, 5)).astype(np.float32)
    metrics = multilabel_metrics(torch.from_numpy(logits), torch.from_numpy(targets))
    expected = average_precision_score(targets[:, :4], logits[:, :4], average="macro")
    assert metrics["mAP"] == pytest.approx(expected)
    assert metrics["label_acc"] == pytest.approx(float(((logits > 0) == (targets > 0.5)).mean()))
    assert metrics["n"] == 30


def test_the_layout_is_found_by_its_marker_and_read_as_label_vectors(multilabel_root, tmp_path):
    kind, layout = task_type_of(str(multilabel_root), "parity")
    assert (kind.name, layout, kind.default_splits(layout), kind.full_train_split(layout)) == (
        "multilabel", "multilabel", ("train", "val"), "train+val")
    split = load_multilabel_split(str(multilabel_root), "parity", "train")
    first_digit = int((multilabel_root / "parity" / "train.txt").read_text().split()[1].split(",")[0])
    assert split.class_names == CLASSES and split.samples[0][1].tolist() == [
        float(c in (first_digit, 10 + first_digit % 2)) for c in range(12)]
    both = load_multilabel_split(str(multilabel_root), "parity", "train+val")
    val = load_multilabel_split(str(multilabel_root), "parity", "val")
    assert len(both.samples) == len(split.samples) + len(val.samples)
    task = tmp_path / "bad"
    task.mkdir()
    (task / "multilabel").touch()
    (task / "classes.txt").write_text("a\nb\n")
    (task / "train.txt").write_text("x.png 0,1\ny.png -\nz.png 0,2\n")
    with pytest.raises(DataError, match=r"train.txt:3: label 2 is outside \[0, 2\)"):
        load_multilabel_split(str(tmp_path), "bad", "train")
    (task / "train.txt").write_text("x.png one\n")
    with pytest.raises(DataError, match=r"train.txt:1: expected '<image path> <id>,<id>,...'"):
        load_multilabel_split(str(tmp_path), "bad", "train")


def test_a_multilabel_task_trains_evaluates_saves_and_predicts_through_the_cli(multilabel_root, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(multilabel_root), "--task", "parity", *TINY_CLI, "--method", "vpt-deep",
            "--num-prompts", "2", "--epochs", "2", "--batch-size", "32", "--lr", "0.01", "--out", str(run), "--quiet"]
    assert main(args) == 0
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert (recorded["head"], recorded["protocol"], recorded["optimizer"]) == ("linear", "vtab", "adamw")
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_label_acc", "val_mAP", "val_label_acc"} <= set(header)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["selected_by"] == "val mAP"

    capsys.readouterr()
    assert main(["eval", str(run), "--split", "test", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 100 and 0.0 <= result["mAP"] <= 1.0

    # The saved file reloads as a multi-label model whose scores give eval's mAP, by scikit-learn.
    model = load_run_model(run, run_config(run)).eval()
    assert model.task_type == "multilabel"
    test = load_multilabel_split(str(multilabel_root), "parity", "test")
    transform = model.input_spec.transform()
    images = torch.stack([transform(load_rgb(path)) for path, _ in test.samples])
    with torch.no_grad():
        scores = model(images).sigmoid().numpy()
    truth = torch.stack([labels for _, labels in test.samples]).numpy()
    present = truth.any(axis=0)
    assert result["mAP"] == pytest.approx(average_precision_score(truth[:, present], scores[:, present]), abs=1e-6)

    image = test.samples[0][0]
    assert main(["predict", str(run), str(image), "--top-k", "12"]) == 0
    shown = capsys.readouterr().out.split(": ", 1)[1].split(", ")
    printed = {name: float(score) for name, score in (item.rsplit(" ", 1) for item in shown)}
    assert printed == pytest.approx({CLASSES[c]: float(s) for c, s in enumerate(scores[0])}, abs=1e-3)
    assert sum(printed.values()) != pytest.approx(1.0, abs=1e-2)  # one sigmoid per class, not a softmax


def test_head_only_training_caches_multilabel_features(multilabel_root, tmp_path):
    config = TrainConfig(data=str(multilabel_root), task="parity", out=str(tmp_path / "run"),
                         backbone="vit_tiny_patch16_224", pretrained=False, img_size=32, method="linear", epochs=1,
                         batch_size=32, quiet=True, device="cpu")
    summary = train(config)
    assert summary["features_cached"] and summary["selected_by"] == "val mAP"


def test_a_segmentation_head_is_refused_for_multilabel_data(multilabel_root, tmp_path, capsys):
    args = ["train", "--data", str(multilabel_root), "--task", "parity", *TINY_CLI, "--head", "setr-naive",
            "--out", str(tmp_path / "run")]
    assert_one_line_error(main(args), capsys.readouterr().err, "head 'setr-naive' is a segmentation head",
                          "multilabel data (multilabel)")
