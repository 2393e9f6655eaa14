"""FGVC json and class-folder data through `vptune train`, `eval` and `predict`, checked by an independent forward."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm.data
import torch
import yaml
from sklearn.metrics import top_k_accuracy_score

import vptune
from vptune.cli.main import main
from vptune.data import build_transform, load_rgb

from conftest import DIGIT_NAMES, TINY_CLI

SIZES = {"train": 120, "val": 40, "test": 50}
SOURCE_SPLITS = {"train": "train800", "val": "val200", "test": "test"}


def digit_samples(small_digits_root: Path, split: str) -> list[tuple[Path, int]]:
    """(image path, digit) pairs of the first SIZES[split] images of a digits split."""
    task = small_digits_root / "digits"
    lines = (task / f"{SOURCE_SPLITS[split]}.txt").read_text().splitlines()[:SIZES[split]]
    return [(task / rel, int(label)) for rel, label in (line.split() for line in lines)]


def make_fgvc(small_digits_root: Path, root: Path) -> dict[str, list[tuple[Path, int]]]:
    """digits as FGVC: `images/` and train/val/test.json mapping paths under it to class ids."""
    task = root / "digits"
    task.mkdir(parents=True)
    (task / "images").symlink_to((small_digits_root / "digits" / "images").resolve())
    samples = {}
    for split in SIZES:
        pairs = digit_samples(small_digits_root, split)
        rel = {str(path.relative_to(small_digits_root / "digits" / "images")): label for path, label in pairs}
        (task / f"{split}.json").write_text(json.dumps(rel))
        samples[split] = [(task / "images" / r, label) for r, label in rel.items()]
    return samples


def make_folders(small_digits_root: Path, root: Path) -> dict[str, list[tuple[Path, int]]]:
    """digits as class folders `<split>/<digit name>/<image>`; class ids follow the sorted names."""
    index = {name: i for i, name in enumerate(sorted(DIGIT_NAMES))}
    samples: dict[str, list[tuple[Path, int]]] = {}
    for split in SIZES:
        samples[split] = []
        for path, digit in digit_samples(small_digits_root, split):
            link = root / "digits" / split / DIGIT_NAMES[digit] / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
            samples[split].append((link, index[DIGIT_NAMES[digit]]))
    return samples


def independent_probabilities(run_dir: Path, paths: list[Path]) -> tuple[np.ndarray, list[str]]:
    """Softmax of the saved task on each image, from vptune.load and the recorded protocol's transform."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    torch.manual_seed(config["seed"])  # the random-init backbone, as training built it
    model = vptune.load(run_dir / "task.safetensors").eval()
    data = timm.data.resolve_model_data_config(model.backbone)
    transform = build_transform(config["protocol"], config["img_size"], data["mean"], data["std"], train=False)
    with torch.no_grad():
        batch = torch.stack([transform(load_rgb(path)) for path in paths])
        return model(batch).softmax(dim=1).double().numpy(), model.class_names


@pytest.mark.parametrize("layout,make", [("fgvc", make_fgvc), ("folders", make_folders)])
def test_train_eval_predict_on_a_layout(layout, make, small_digits_root, tmp_path, capsys):
    samples = make(small_digits_root, tmp_path / "data")
    run_dir = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "data"), "--task", "digits", *TINY_CLI, "--method", "linear",
                 "--epochs", "1", "--batch-size", "40", "--quiet", "--out", str(run_dir)]) == 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (config["protocol"], config["train_split"], config["eval_split"]) == (layout, "train", "val")
    capsys.readouterr()

    assert main(["eval", str(run_dir), "--split", "test", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    paths, labels = [p for p, _ in samples["test"]], np.array([label for _, label in samples["test"]])
    probs, class_names = independent_probabilities(run_dir, paths)
    assert result["data"] == {"root": str(tmp_path / "data"), "task": "digits", "split": "test"}
    assert result["n"] == SIZES["test"]
    assert result["top1"] == pytest.approx(float(np.mean(probs.argmax(1) == labels)), abs=1e-12)
    assert result["top5"] == pytest.approx(top_k_accuracy_score(labels, probs, k=5, labels=range(10)), abs=1e-12)

    shown = paths[:3]
    assert main(["predict", str(run_dir), *map(str, shown), "--top-k", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(shown)
    for line, path, row in zip(lines, shown, probs):
        printed_path, ranked = line.split(": ", 1)
        entries = [entry.rsplit(" ", 1) for entry in ranked.split(", ")]
        assert printed_path == str(path)
        assert [name for name, _ in entries] == [class_names[i] for i in np.argsort(-row, kind="stable")]
        assert [float(p) for _, p in entries] == pytest.approx(sorted(row, reverse=True), abs=5e-4 + 1e-9)
