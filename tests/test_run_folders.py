"""Run folders: one writer at a time, never a folder that is not a run's, never NaN tensors, strict --resume."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest
import torch

from vptune.cli.main import build_parser, main
from vptune.cli.train import config_from_args
from vptune.engine import TrainConfig, runinfo
from vptune.engine.config import write_yaml
from vptune.engine.runfolder import CONFIG, MARKER, is_run_folder, mark_run_folder

from conftest import TINY_CLI, assert_one_line_error

FAST = [*TINY_CLI, "--method", "linear", "--epochs", "1", "--quiet"]


def vptune(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def listing(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(small_digits_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", small_digits_root, "--task", "digits", *FAST, "--out", out]
    assert vptune(capsys, *args)[0] == 0
    before = listing(out)
    with (out / ".lock").open("a") as first_writer:
        fcntl.flock(first_writer, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running `vptune train` holds it
        for command in (args, ["train", "--resume", "--out", out, "--quiet"]):
            code, _, err = vptune(capsys, *command)
            assert_one_line_error(code, err, f"run folder '{out}' is being written by another run")
            assert listing(out) == before
    # Released, the same folder resumes (a finished run: nothing left to train, the task file is rewritten).
    code, _, err = vptune(capsys, "train", "--resume", "--out", out, "--quiet")
    assert code == 0 and err == ""


def test_an_empty_folder_is_a_fine_run_folder(small_digits_root, tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    code, _, err = vptune(capsys, "train", "--data", small_digits_root, "--task", "digits", *FAST, "--out", out)
    assert code == 0 and err == ""
    assert (out / "task.safetensors").is_file()


@pytest.mark.parametrize("text", ["my: own\nnotes: true\n", "lr: 0.1\nepochs: 3\n"], ids=["other-keys", "train-keys"])
@pytest.mark.parametrize("resume", [False, True], ids=["train", "resume"])
def test_a_users_own_config_yaml_is_not_a_run(small_digits_root, tmp_path, capsys, text, resume):
    out = tmp_path / "myexp"
    out.mkdir()
    (out / "config.yaml").write_text(text)  # even one that reads as training settings
    (out / "metrics.csv").write_text("epoch,loss\n") if resume else None  # nor a file a run would write beside it
    args = ["train", "--resume", "--out", out, "--quiet"] if resume else \
        ["train", "--data", small_digits_root, "--task", "digits", *FAST, "--out", out]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = vptune(capsys, *args)
    assert_one_line_error(code, err, f"--out '{out}' holds files but no vptune run")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    for command in (["eval", out], ["predict", out, small_digits_root / "digits" / "images" / "test" / "000000.png"]):
        code, _, err = vptune(capsys, *command)
        assert_one_line_error(code, err, f"'{out}' is not a vptune run folder")


def test_runs_are_recognised_by_their_marker_or_a_config_beside_a_run_file(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    write_yaml(TrainConfig(data="data", task="digits").to_dict(), folder / CONFIG)
    assert not is_run_folder(folder)  # a config file alone is anyone's
    (folder / "metrics.csv").write_text("epoch,loss\n")
    (folder / "environment.json").write_text("{}")
    assert not is_run_folder(folder)  # nor beside files of common names
    (folder / "environment.json").write_text(json.dumps(runinfo.environment(torch.device("cpu"), 1)))
    assert is_run_folder(folder)  # as runs wrote them before the marker
    (folder / CONFIG).write_text("my: own\n")
    assert not is_run_folder(folder)  # a run's file beside a config.yaml vptune cannot read
    mark_run_folder(folder)
    assert is_run_folder(folder) and json.loads((folder / MARKER).read_text())["vptune"]


def test_a_failed_start_leaves_no_folder_behind(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = vptune(capsys, "train", "--data", tmp_path / "nowhere", "--task", "digits", *FAST, "--out", out)
    assert_one_line_error(code, err, "is not a folder")
    assert not out.exists()


def test_non_finite_tuned_tensors_are_never_saved(small_digits_root, tmp_path, capsys):
    # One SGD step with a huge weight decay on the head: the loss before it is finite, the weights after it are not.
    out = tmp_path / "run"
    code, _, err = vptune(capsys, "train", "--data", small_digits_root, "--task", "digits", *FAST, "--optimizer", "sgd",
                          "--lr", "1e10", "--weight-decay", "1e38", "--warmup-epochs", "0", "--batch-size", "256",
                          "--out", out)
    assert_one_line_error(code, err, "tuned tensor head.", "became non-finite in epoch 1", "lower --lr")
    assert not (out / "checkpoint.pt").exists() and not (out / "task.safetensors").exists()


def test_resume_applies_runtime_settings_and_says_so(small_digits_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert vptune(capsys, "train", "--data", small_digits_root, "--task", "digits", *FAST, "--out", out)[0] == 0
    code, _, err = vptune(capsys, "train", "--resume", "--out", out, "--quiet", "--device", "cpu", "--num-workers", "0")
    assert code == 0
    assert err.splitlines() == [f"vptune: resuming '{out}' with device 'cpu' (was 'auto') "
                                "(runtime settings; the run's others are kept)"]
    code, _, err = vptune(capsys, "train", "--resume", "--out", out, "--quiet", "--batch-size", "8", "--seed", "1")
    assert_one_line_error(code, err, "but these differ: batch_size 32 -> 8, seed 0 -> 1")


def test_yaml_values_are_typed_like_the_flags(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("lr: 1e-3\nweight_decay: '0'\nmethod: lora\nmethod_options: {alpha: 1e-1}\n"
                      "allow_keys: [head]\n")
    args = build_parser().parse_args(["train", "--config", str(config), "--data", "d", "--task", "t",
                                      "--option", "dropout=1e-2"])
    typed = config_from_args(args)
    assert (typed.lr, typed.weight_decay, typed.allow_keys) == (1e-3, 0.0, ["head"])
    assert typed.method_options == {"alpha": 0.1, "dropout": 0.01}


def test_bf16_on_a_cpu_without_it_warns_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runinfo, "cpu_native_bf16", lambda: False)
    code, _, err = vptune(capsys, "train", "--data", tmp_path / "nowhere", "--task", "digits", *FAST,
                          "--precision", "bf16", "--device", "cpu", "--out", tmp_path / "run")
    warning, error = err.splitlines()
    assert warning.startswith("vptune: warning: --precision bf16 on this CPU is emulated") and "fp32" in warning
    assert error.startswith("vptune: error: ") and code == 1
    monkeypatch.setattr(runinfo, "cpu_native_bf16", lambda: True)
    vptune(capsys, "train", "--data", tmp_path / "nowhere", "--task", "digits", *FAST, "--precision", "bf16",
           "--device", "cpu", "--out", tmp_path / "run")
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("flags, expected", [("fpu avx2 avx512f avx512_bf16", True), ("fpu amx_bf16", True),
                                             ("fpu avx2 avx512f", False)])
def test_cpu_bf16_support_is_read_from_the_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert runinfo.cpu_native_bf16(cpuinfo) is expected
    assert runinfo.cpu_native_bf16(tmp_path / "missing") is None


def test_environment_records_cpu_bf16_support(small_digits_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert vptune(capsys, "train", "--data", small_digits_root, "--task", "digits", *FAST, "--out", out)[0] == 0
    environment = json.loads((out / "environment.json").read_text())
    assert environment["cpu_native_bf16"] is runinfo.cpu_native_bf16()


def test_a_warm_up_longer_than_the_run_ends_with_it(small_digits_root, tmp_path, capsys):
    runs = {}
    for warmup in ("1", "1e308"):  # 1e308 epochs of steps is no whole number of steps
        out = tmp_path / warmup
        code, _, err = vptune(capsys, "train", "--data", small_digits_root, "--task", "digits", *FAST,
                              "--warmup-epochs", warmup, "--out", out)
        assert code == 0 and err == ""
        runs[warmup] = [row.split(",")[:4] for row in (out / "metrics.csv").read_text().splitlines()]
    assert runs["1e308"] == runs["1"]
