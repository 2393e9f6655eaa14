"""Bad inputs end in one line on stderr, `vptune: error: ...`, and a non-zero exit; never a traceback."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from vptune.cli.main import main

from conftest import TINY_CLI, assert_one_line_error, copy_task, run_vptune

# Linear on a tiny random ViT: features are computed once, so a run takes about a second.
FAST = [*TINY_CLI, "--method", "linear", "--epochs", "1", "--quiet"]


def vptune(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def finished_run(small_digits_root, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("errors") / "run"
    assert main([str(a) for a in ["train", "--data", small_digits_root, "--task", "digits", *FAST, "--out", run_dir]]) == 0
    return run_dir


def test_missing_data_folder_real_process(tmp_path):
    result = run_vptune("train", "--data", tmp_path / "nowhere", "--task", "digits", *FAST, "--out", tmp_path / "r")
    assert_one_line_error(result.returncode, result.stderr, str(tmp_path / "nowhere"), "is not a folder")
    assert not (tmp_path / "r").exists()


def test_nan_loss_names_step_and_lr_real_process(small_digits_root, tmp_path):
    result = run_vptune("train", "--data", small_digits_root, "--task", "digits", *TINY_CLI, "--method", "vpt-deep",
                        "--epochs", "1", "--lr", "1e30", "--quiet", "--out", tmp_path / "r")
    line = assert_one_line_error(result.returncode, result.stderr, "loss became", "lower --lr")
    assert re.search(r"loss became (nan|inf) at epoch 1, step \d+ \(lr \d\.\d+e\+(28|29|30)\)", line), line
    assert not (tmp_path / "r" / "task.safetensors").exists()


def test_missing_split_file(small_digits_root, finished_run, tmp_path, capsys):
    code, _, err = vptune(capsys, "train", "--data", small_digits_root, "--task", "digits", *FAST,
                          "--train-split", "train1000", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "split 'train1000' not found", "available splits: test, train800")

    data = tmp_path / "data"
    (copy_task(small_digits_root, data) / "test.txt").unlink()
    code, _, err = vptune(capsys, "eval", finished_run, "--data", data, "--split", "test")
    assert_one_line_error(code, err, "split 'test' not found", str(data / "digits"))


def test_corrupt_image_is_named_and_can_be_skipped(small_digits_root, tmp_path, capsys):
    task = copy_task(small_digits_root, tmp_path / "data")
    (task / "broken.png").write_bytes(b"not a png")
    train_list = task / "train800.txt"
    train_list.write_text("broken.png 3\n" + train_list.read_text())
    args = ["train", "--data", tmp_path / "data", "--task", "digits", *FAST]

    code, _, err = vptune(capsys, *args, "--out", tmp_path / "r1")
    assert_one_line_error(code, err, f"image {task / 'broken.png'} cannot be decoded", "--skip-bad-images")

    code, _, err = vptune(capsys, *args, "--skip-bad-images", "--out", tmp_path / "r2")
    assert code == 0 and err == ""
    summary = json.loads((tmp_path / "r2" / "summary.json").read_text())
    assert summary["skipped_images"] == {"train800": 1, "val200": 0}


def test_label_outside_the_class_names(small_digits_root, tmp_path, capsys):
    task = copy_task(small_digits_root, tmp_path / "short")
    (task / "classes.txt").write_text("zero\none\ntwo\n")  # fewer names than the labels use
    code, _, err = vptune(capsys, "train", "--data", tmp_path / "short", "--task", "digits", *FAST, "--out", tmp_path / "r")
    assert_one_line_error(code, err, "is outside [0, 3)", str(task / "classes.txt"), "add the missing class names")

    task = copy_task(small_digits_root, tmp_path / "high")
    test_list = task / "test.txt"
    test_list.write_text(test_list.read_text() + "images/test/000000.png 10\n")  # no train class 10, no name
    last_line = len(test_list.read_text().splitlines())
    code, _, err = vptune(capsys, "train", "--data", tmp_path / "high", "--task", "digits", *FAST, "--out", tmp_path / "r")
    assert_one_line_error(code, err, f"{test_list}:{last_line}: label 10 is outside [0, 10)")


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--backbone", "vit_tiny_patch16_2244"], ["backbone 'vit_tiny_patch16_2244' is not a timm model"]),
        (["--method", "vpt-deeep"], ["unknown method 'vpt-deeep'", "did you mean vpt-deep"]),
        (["--img-size", "30"], ["img_size 30 is not a multiple of the patch size 16", "try 32"]),
    ],
    ids=["backbone", "method", "img-size"],
)
def test_unusable_model_settings(small_digits_root, tmp_path, capsys, flags, fragments):
    code, _, err = vptune(capsys, "train", "--data", small_digits_root, "--task", "digits", *FAST, *flags,
                          "--out", tmp_path / "r")
    assert_one_line_error(code, err, *fragments)


def test_task_file_of_another_backbone_is_refused(small_digits_root, finished_run, tmp_path, capsys):
    other = tmp_path / "other"
    assert main([str(a) for a in ["train", "--data", small_digits_root, "--task", "digits", *FAST, "--img-size", "48",
                                  "--out", other]]) == 0
    swapped = tmp_path / "swapped"
    shutil.copytree(finished_run, swapped)
    shutil.copy(other / "task.safetensors", swapped / "task.safetensors")
    image = small_digits_root / "digits" / "images" / "test" / "000000.png"
    for command in (["eval", swapped], ["predict", swapped, image]):
        code, out, err = vptune(capsys, *command)
        assert_one_line_error(code, err, f"'{swapped / 'task.safetensors'}' was tuned on", "weights")
        assert out == ""


def test_resume_needs_a_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        code, _, err = vptune(capsys, "train", "--resume", "--out", folder)
        assert_one_line_error(code, err, f"nothing to resume in '{folder}'", "start without --resume")


def test_training_into_a_finished_run_is_refused(small_digits_root, finished_run, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in finished_run.iterdir()}
    code, _, err = vptune(capsys, "train", "--data", small_digits_root, "--task", "digits", *FAST, "--out", finished_run)
    assert_one_line_error(code, err, f"run folder '{finished_run}' already holds a run", "--resume")
    assert {p.name: p.stat().st_mtime_ns for p in finished_run.iterdir()} == before
