"""Segmentation runs: loss, sliding-window inference, metrics, and train -> eval -> predict on a tiny scene task."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import vptune
from vptune.cli.main import main
from vptune.data import prepare_task
from vptune.engine.evaluate import load_run_model, run_config
from vptune.data import input_spec
from vptune.engine.evaluate import evaluate_split
from vptune.segmentation import scenes as seg_tasks
from vptune.segmentation.inference import _starts, predict_mask, segment, slide_logits
from vptune.engine.distributed import Dist
from vptune.tasks import Scoring, get_task_type
from vptune.tasks.segmentation import by_class, pixel_hits

from conftest import TINY_CLI, assert_one_line_error, fashion_available, tiny_vit



TASK = "fashion-scenes" if fashion_available() else "shapes-seg"
SIZES = {"train": 8, "val": 4, "test": 3}
TRAINING = [*TINY_CLI, "--method", "vpt-deep", "--num-prompts", "2", "--epochs", "1", "--batch-size", "4",
            "--lr", "0.01"]
SEG_CLI = [*TRAINING, "--head", "setr-naive", "--head-option", "channels=8"]


# ---------------------------------------------------------------- sliding windows


class PixelModel(torch.nn.Module):
    """A 1x1 conv taking exactly `size` x `size` inputs, like a ViT at its image size."""

    num_classes = 5

    def __init__(self, size: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.size, self.conv = size, torch.nn.Conv2d(3, 5, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2:] == (self.size, self.size)
        self.calls += 1
        return self.conv(x)


def test_window_starts_follow_mmseg():
    assert _starts(70, 32, 21) == [0, 21, 38]  # the last window ends at the border
    assert _starts(32, 32, 21) == [0]
    assert _starts(20, 32, 21) == [0]


@pytest.mark.parametrize("height, width", [(45, 70), (20, 25), (32, 32)])
def test_sliding_windows_equal_a_whole_image_pass_for_a_per_pixel_model(height, width):
    model = PixelModel(32)
    image = torch.randn(3, height, width)
    logits = slide_logits(model, image, crop=32, stride=21)
    assert torch.allclose(logits, model.conv(image[None])[0], atol=1e-6)
    assert model.calls == len(_starts(height, 32, 21)) * len(_starts(width, 32, 21))


def test_multi_scale_averages_probabilities():
    model = PixelModel(16)
    image = torch.randn(3, 24, 40)
    probs = segment(model, image, (30, 50), 16, 10, scales=(0.5, 1.0, 1.5), flip=True)
    assert probs.shape == (5, 30, 50) and torch.allclose(probs.sum(0), torch.ones(30, 50), atol=1e-5)
    single = segment(model, image, (24, 40), 16, 10)
    assert torch.allclose(single, model.conv(image[None])[0], atol=1e-6)


def test_evaluation_scores_each_image_at_its_mask_size():
    """Against a whole-image pass of a per-pixel model, counted by hand."""
    model = PixelModel(16)
    images = [torch.randn(3, 20, 30), torch.randn(3, 16, 40)]
    masks = [torch.randint(5, (20, 30)), torch.randint(5, (16, 40))]
    masks[0][:5] = 255
    metrics = evaluate_split(get_task_type("segmentation"), model, model, [(images, masks)], Dist(),
                             Scoring(torch.device("cpu"), 16), precision="fp32", show=False, desc="eval")
    preds = [model.conv(image[None])[0].argmax(0) for image in images]
    labelled = [m != 255 for m in masks]
    correct = sum(int((p == m)[keep].sum()) for p, m, keep in zip(preds, masks, labelled))
    assert metrics["n"] == 2 and metrics["aAcc"] == pytest.approx(correct / sum(int(k.sum()) for k in labelled))
    inter = [sum(int(((p == c) & (m == c) & k).sum()) for p, m, k in zip(preds, masks, labelled)) for c in range(5)]
    union = [sum(int((((p == c) | (m == c)) & k).sum()) for p, m, k in zip(preds, masks, labelled)) for c in range(5)]
    assert metrics["IoU"] == pytest.approx([i / u for i, u in zip(inter, union)])
    assert by_class([0.5, float("nan")], ["a", "b"]) == {"a": 0.5, "b": None}


def test_pixel_hits_leave_out_ignored_pixels():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = 1.0  # predicts class 1 everywhere
    assert pixel_hits(logits, torch.tensor([[[1, 0], [255, 1]]])) == (2, 3)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def scenes_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(seg_tasks, "SEG_SPLIT_SIZES", {**SIZES, "test": 500})
        prepare_task(TASK, root, n_test=SIZES["test"])
    return root


@pytest.fixture(scope="module")
def seg_run(scenes_root, tmp_path_factory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("seg-run") / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["train", "--data", str(scenes_root), "--task", TASK, *SEG_CLI, "--out", str(run_dir)]) == 0
    return run_dir, stdout.getvalue()


def test_train_selects_by_val_miou(seg_run):
    run_dir, stdout = seg_run
    assert stdout.startswith("epoch 1 | loss ") and "train aAcc" in stdout and "val mIoU" in stdout
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["selected_by"] == "val mIoU" and 0.0 <= summary["val_mIoU"] <= 1.0
    config = run_config(run_dir)
    assert (config.protocol, config.head, config.head_options["channels"]) == ("seg-folders", "setr-naive", 8)
    # --lr given; the rest of the optimizer and schedule is the segmentation recipe.
    assert (config.optimizer, config.lr, config.weight_decay, config.warmup_epochs) == ("sgd", 0.01, 0.0, 0.0)
    assert (config.schedule, config.min_lr, config.head_lr_multiplier) == ("poly", 0.001, 10.0)


def test_training_repeats_exactly_for_a_seed(seg_run, scenes_root, tmp_path):
    """Random resize/crop/flip/photometric draws follow the run's seed, so a rerun writes the same tensors."""
    run_dir, _ = seg_run
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--data", str(scenes_root), "--task", TASK, *SEG_CLI, "--out", str(tmp_path / "again")]) == 0
    first, again = load_file(run_dir / "task.safetensors"), load_file(tmp_path / "again" / "task.safetensors")
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)


def test_eval_reports_miou_aacc_and_class_iou(seg_run, scenes_root, capsys):
    run_dir, _ = seg_run
    assert main(["eval", str(run_dir), "--split", "test", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    names = (scenes_root / TASK / "classes.txt").read_text().splitlines()
    assert result["n"] == SIZES["test"] and not result["multi_scale"]
    assert 0.0 <= result["mIoU"] <= 1.0 and 0.0 <= result["aAcc"] <= 1.0
    assert list(result["IoU"]) == names and names[0] == "background"
    assert main(["eval", str(run_dir), "--split", "test", "--quiet", "--multi-scale"]) == 0
    multi = json.loads(capsys.readouterr().out)
    assert multi["multi_scale"] and 0.0 <= multi["mIoU"] <= 1.0


def test_predict_writes_masks_that_match_the_loaded_model(seg_run, scenes_root, tmp_path, capsys):
    run_dir, _ = seg_run
    image_path = scenes_root / TASK / "images" / "test" / "000000.png"
    assert main(["predict", str(run_dir), str(image_path), "--out-dir", str(tmp_path)]) == 0
    assert str(tmp_path / "000000_mask.png") in capsys.readouterr().out
    written = Image.open(tmp_path / "000000_mask.png")
    assert written.mode == "P" and written.size == Image.open(image_path).size
    assert Image.open(tmp_path / "000000_overlay.png").mode == "RGB"

    model = load_run_model(run_dir, run_config(run_dir))
    spec = model.input_spec  # the pipeline the per-task file recorded
    assert (spec.protocol, spec.img_size) == ("seg-folders", 32)
    assert spec.to_dict()["keep_ratio"] and spec.to_dict()["resize"] == [128, 32]
    image = Image.open(image_path).convert("RGB")
    assert np.array_equal(np.asarray(written), predict_mask(model, image, spec, torch.device("cpu")))


def test_save_load_gives_the_same_masks(tmp_path, scenes_root):
    backbone = tiny_vit()
    model = vptune.create(backbone, "vpt-deep", 4, num_prompts=2, head="setr-pup", head_options={"channels": 8})
    model.train()
    model(torch.randn(2, 3, 32, 32))  # moves the BatchNorm running statistics off their init
    path = tmp_path / "task.safetensors"
    vptune.save(model, path)
    loaded = vptune.load(path, tiny_vit())
    spec = input_spec(backbone, "seg-folders")
    image = Image.open(scenes_root / TASK / "images" / "val" / "000001.png").convert("RGB")
    first = predict_mask(model, image, spec, torch.device("cpu"))
    assert np.array_equal(first, predict_mask(loaded, image, spec, torch.device("cpu")))


def test_heads_must_fit_the_data(scenes_root, small_digits_root, tmp_path, capsys):
    args = ["train", "--data", str(scenes_root), "--task", TASK, *TRAINING, "--head", "linear",
            "--out", str(tmp_path / "a")]
    assert_one_line_error(main(args), capsys.readouterr().err, "head 'linear' is a classification head",
                          "segmentation data (seg-folders)")
    args = ["train", "--data", str(small_digits_root), "--task", "digits", *SEG_CLI, "--out", str(tmp_path / "b")]
    assert_one_line_error(main(args), capsys.readouterr().err, "head 'setr-naive' is a segmentation head",
                          "classification data (vtab)")
