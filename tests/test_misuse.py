"""Every misuse of the CLI ends in one `vptune: error:` line and a non-zero exit; the API raises VptuneError."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
import torch

import vptune
import vptune.cli.params
from vptune.engine import TrainConfig, train
from vptune.engine.config import write_yaml
from vptune.engine.runfolder import mark_run_folder
from vptune.errors import VptuneError
from vptune.cli.main import main

from conftest import assert_one_line_error, run_vptune, tiny_vit

# Settings that pass every check, so each case below fails only on what it changes.
BASE = ["--data", "{tmp}/data", "--task", "digits", "--backbone", "vit_tiny_patch16_224", "--no-pretrained",
        "--img-size", "32", "--method", "linear", "--epochs", "1", "--quiet", "--out", "{tmp}/out"]


def train_with(*flags: str) -> list[str]:
    return ["train", *BASE, *flags]


CASES = [
    # numbers that are not finite or out of range
    (train_with("--lr", "nan"), "--lr must be a finite number, got nan"),
    (train_with("--lr", "inf"), "--lr must be a finite number, got inf"),
    (train_with("--lr", "-1"), "--lr must be > 0, got -1.0"),
    (train_with("--lr", "1e300"), "--lr and --weight-decay must be at most 3.4e+38 (the float32 range), got 1e+300"),
    (train_with("--weight-decay", "nan"), "--weight-decay must be a finite number"),
    (train_with("--weight-decay", "-1"), "--weight-decay must be >= 0"),
    (train_with("--momentum", "1.5"), "--momentum must be in [0, 1), got 1.5"),
    (train_with("--momentum", "-0.1"), "--momentum must be in [0, 1)"),
    (train_with("--grad-clip", "-1"), "--grad-clip must be > 0 (a gradient norm), got -1.0; leave it unset"),
    (train_with("--grad-clip", "0"), "--grad-clip must be > 0"),
    (train_with("--grad-clip", "nan"), "--grad-clip must be a finite number"),
    (train_with("--warmup-epochs", "-1"), "--warmup-epochs must be >= 0"),
    (train_with("--warmup-epochs", "inf"), "--warmup-epochs must be a finite number"),
    (train_with("--num-workers", "-1"), "--num-workers must be >= 0, got -1"),
    (train_with("--seed", "-1"), "--seed must be a whole number in [0, 2**32), got -1"),
    (train_with("--seed", str(2**32)), "--seed must be a whole number in [0, 2**32)"),
    (train_with("--epochs", "0"), "--epochs must be a whole number >= 1, got 0"),
    (train_with("--epochs", "ten"), "argument --epochs: invalid int value: 'ten'"),
    (train_with("--batch-size", "0"), "--batch-size must be a whole number >= 1, got 0"),
    (train_with("--img-size", "0"), "--img-size must be in [1, 4096]"),
    (train_with("--img-size", str(10**6)), "--img-size must be in [1, 4096]"),
    (train_with("--optimizer", "adam"), "optimizer 'adam' is not one of: adamw, sgd"),
    (train_with("--precision", "fp16"), "precision 'fp16' is not one of: fp32, bf16"),
    (train_with("--device", "tpu"), "unknown device 'tpu'"),
    (train_with("--bogus-flag"), "unrecognized arguments: --bogus-flag"),
    (train_with("--arch", "vit_tiny_patch16_224"), "--arch names the architecture of a checkpoint file"),
    # method options
    (train_with("--method", "vpt-deep", "--prompt-dropout", "nan"), "method option prompt_dropout must be a finite number"),
    (train_with("--method", "lora", "--option", "alpha=.nan"), "method option alpha must be a finite number"),
    (train_with("--method", "adapter", "--option", "reduction=abc"), "adapter option reduction must be a whole number, got 'abc'"),
    (train_with("--method", "lora", "--option", "rank=2.5"), "lora option rank must be a whole number, got 2.5"),
    (train_with("--method", "lora", "--option", "target_modules=abc"), "lora option target_modules takes a list"),
    (train_with("--method", "lora", "--option", "rank"), "--option takes KEY=VALUE, got 'rank'"),
    (train_with("--method", "lora", "--option", "rank=["), "--option rank: cannot read '['"),
    (train_with("--method", "lora", "--option", "bogus=1"), "method 'lora' has no option bogus"),
    (train_with("--method", "vpt-deep", "--deep-blocks", "a-b"), "--deep-blocks takes I-J"),
    # run folders
    (train_with("--out", "{tmp}/file"), "--out '{tmp}/file' is a file, not a folder"),
    (train_with("--out", "{tmp}/file/run"), "cannot write run folder '{tmp}/file/run'"),
    (train_with("--out", "{tmp}/notes"), "--out '{tmp}/notes' holds files but no vptune run"),
    (["train", "--resume", "--out", "{tmp}/run", "--epochs", "5"],
     "--resume keeps the settings of '{tmp}/run', but these differ: epochs 2 -> 5"),
    (["train", "--resume", "--out", "{tmp}/run", "--lr", "0.1", "--method", "linear"],
     "method 'vpt-deep' -> 'linear', lr None -> 0.1; drop them, or train into a new --out"),
    (["train", "--resume", "--out", "{tmp}/run", "--num-prompts", "3"], "method option num_prompts None -> 3"),
    (["train", "--resume", "--out", "{tmp}/notes"], "--out '{tmp}/notes' holds files but no vptune run"),
    # YAML config files
    (train_with("--config", "{tmp}/batch-ten.yaml"), "batch_size must be a whole number, got 'ten'"),
    (train_with("--config", "{tmp}/allow-str.yaml"), "allow_keys takes a list"),
    (train_with("--config", "{tmp}/bool-str.yaml"), "scale_lr must be true or false, got 'no'"),
    (train_with("--config", "{tmp}/list.yaml"), "must hold a mapping of option: value"),
    (train_with("--config", "{tmp}/int-key.yaml"), "has key 1; keys are option names"),
    (train_with("--config", "{tmp}/binary.yaml"), "is not valid YAML"),
    (train_with("--config", "{tmp}/options-int.yaml"), "method_options in '{tmp}/options-int.yaml' must be a mapping"),
    (train_with("--config", "{tmp}/head-options-int.yaml"), "head_options in '{tmp}/head-options-int.yaml' must be a "
                                                            "mapping of option: value, got 5"),
    (train_with("--config", "{tmp}/unknown.yaml"), "unknown config key(s) epoch;"),
    # eval, predict, info on damaged inputs
    (["eval", "{tmp}/file"], "'{tmp}/file' is not a vptune run folder"),
    (["eval", "{tmp}/run", "--batch-size", "0"], "--batch-size must be a whole number >= 1, got 0"),
    (["predict", "{tmp}/bad-json.safetensors", "{tmp}/file"], "has a damaged vptune description (invalid JSON"),
    (["predict", "{tmp}/no-method.safetensors", "{tmp}/file"], "has a damaged vptune description (missing method)"),
    (["predict", "{tmp}/run", "{tmp}/file", "--top-k", "0"], "--top-k must be >= 1"),
    (["info", "{tmp}/bad-json.safetensors"], "has a damaged vptune description (invalid JSON"),
    (["info", "{tmp}/no-method.safetensors"], "missing method"),
    (["info", "{tmp}/file"], "is not a safetensors file"),
    # params, data, demo
    (["params", "--backbone", "vit_tiny_patch16_224", "--method", "lora", "--option", "rank=abc"],
     "lora option rank must be a whole number, got 'abc'"),
    (["params", "--backbone", "vit_tiny_patch16_224", "--method", "linear", "--img-size", str(10**6)],
     "img_size must be a whole number in [1, 4096]"),
    (["data", "prepare", "digits", "--out", "{tmp}/file"], "data root '{tmp}/file' is a file, not a folder"),
    (["data", "prepare", "digits", "--out", "{tmp}/d", "--seed", "-5"], "seed must be a whole number in [0, 2**32)"),
    (["demo", "--seed", "-1", "--out", "{tmp}/demo"], "seed must be a whole number in [0, 2**32), got -1"),
    ([], "the following arguments are required: COMMAND"),
]


def damaged_task_file(path: Path, edit) -> None:
    """A real per-task file whose JSON description `edit` (str -> str) has damaged."""
    torch.manual_seed(0)
    vptune.save(vptune.create(tiny_vit(), "linear", 3), path)
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + size])
    header["__metadata__"]["vptune"] = edit(header["__metadata__"]["vptune"])
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + size:])


def without_method(text: str) -> str:
    description = json.loads(text)
    del description["method"]
    return json.dumps(description)


@pytest.fixture(scope="module")
def misuse_dir(tmp_path_factory) -> Path:
    """A file, a folder of notes, a recorded run, YAML files and damaged task files for the cases above."""
    tmp = tmp_path_factory.mktemp("misuse")
    (tmp / "file").write_text("not a folder\n")
    (tmp / "notes").mkdir()
    (tmp / "notes" / "todo.txt").write_text("mine\n")
    (tmp / "run").mkdir()
    mark_run_folder(tmp / "run")
    write_yaml(TrainConfig(data=str(tmp / "data"), task="digits", epochs=2, method="vpt-deep").to_dict(),
               tmp / "run" / "config.yaml")
    yaml_files = {
        "batch-ten": "batch_size: ten\n", "allow-str": "allow_keys: abc\n", "bool-str": "scale_lr: 'no'\n",
        "list": "- a\n", "int-key": "1: 2\n", "options-int": "method_options: 3\n",
        "head-options-int": "head_options: 5\n", "unknown": "epoch: 3\n",
    }
    for name, text in yaml_files.items():
        (tmp / f"{name}.yaml").write_text(text)
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00 not text")
    damaged_task_file(tmp / "bad-json.safetensors", lambda text: text[:-3])
    damaged_task_file(tmp / "no-method.safetensors", without_method)
    return tmp


def fill(items: list[str] | str, tmp: Path):
    if isinstance(items, str):
        return items.replace("{tmp}", str(tmp))
    return [item.replace("{tmp}", str(tmp)) for item in items]


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("argv, fragment", CASES, ids=[" ".join(x for x in a if x not in BASE)[:70] or "no-command" for a, _ in CASES])
def test_misuse_is_one_line(misuse_dir, capsys, argv, fragment):
    before = sorted(p.relative_to(misuse_dir) for p in misuse_dir.rglob("*"))
    try:
        code = main(fill(argv, misuse_dir))
    except SystemExit as exc:  # argparse usage errors exit 2
        code = exc.code
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.err, fill(fragment, misuse_dir))
    assert captured.out == ""
    # Nothing was written: no run folder, no half-made data root, no lock file.
    assert sorted(p.relative_to(misuse_dir) for p in misuse_dir.rglob("*")) == before


def case(fragment: str, command: str = "train") -> tuple[list[str], str]:
    (found,) = [(argv, f) for argv, f in CASES if fragment in f and argv[:1] == [command]]
    return found


@pytest.mark.parametrize("argv, fragment", [case("--lr must be a finite number, got nan"), case("adapter option reduction"),
                                            case("got 'ten'"), case("(invalid JSON", "info")],
                         ids=["lr-nan", "option-type", "yaml-type", "damaged-header"])
def test_misuse_real_process(misuse_dir, argv, fragment):
    result = run_vptune(*fill(argv, misuse_dir))
    assert_one_line_error(result.returncode, result.stderr, fill(fragment, misuse_dir))


# ------------------------------------------------------------------ Python API


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(num_classes="3"), "num_classes must be a whole number, got '3'"),
    (dict(num_prompts="10"), "num_prompts must be a whole number, got '10'"),
    (dict(num_prompts=0), "vpt-deep needs num_prompts >= 1, got 0"),
    (dict(prompt_dropout=float("nan")), "prompt_dropout must be a finite number"),
    (dict(deep_blocks=[1, 2, 3]), "deep_blocks takes 2 values"),
    (dict(pretrained="no"), "pretrained must be true or false, got 'no'"),
    (dict(img_size="32"), "img_size must be a whole number, got '32'"),
    (dict(class_names="abc"), "class_names takes a list"),
    (dict(backbone=123), "backbone must be a string or a Module, got 123"),
    (dict(method=5), "method must be a string, got 5"),
])
def test_create_refuses_bad_arguments(kwargs, fragment):
    arguments = {"backbone": tiny_vit(), "method": "vpt-deep", "num_classes": 3, **kwargs}
    with pytest.raises(VptuneError, match=re.escape(fragment)):
        vptune.create(arguments.pop("backbone"), arguments.pop("method"), arguments.pop("num_classes"), **arguments)


def test_train_config_types():
    assert TrainConfig.from_dict({"lr": "1e-3", "epochs": "3"}).lr == 1e-3  # as YAML reads them
    assert TrainConfig.from_dict({"method": "lora", "method_options": {"alpha": "1e-3"}}).method_options == {
        "alpha": 1e-3}
    for values, fragment in [({"epochs": "ten"}, "epochs must be a whole number, got 'ten'"),
                             ({"allow_keys": "abc"}, "allow_keys takes a list"),
                             ({"pretrained": "false"}, "pretrained must be true or false")]:
        with pytest.raises(VptuneError, match=fragment):
            TrainConfig.from_dict(values)
    with pytest.raises(VptuneError, match="epochs must be a whole number, got '3'"):
        TrainConfig(epochs="3")  # in Python, values must have their type already
    with pytest.raises(VptuneError, match="train takes a TrainConfig"):
        train({"data": "x"})


def test_save_refuses_non_finite_tensors_and_leaves_no_temporary_file(tmp_path):
    model = vptune.create(tiny_vit(), "linear", 3)
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    with pytest.raises(VptuneError, match="tuned tensor head.weight holds NaN or infinite values"):
        vptune.save(model, tmp_path / "task.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_save_that_cannot_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    model = vptune.create(tiny_vit(), "linear", 3)

    def disk_full(tensors, filename, metadata):
        Path(filename).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vptune.persistence, "save_file", disk_full)
    with pytest.raises(VptuneError, match="cannot write .*No space left on device"):
        vptune.save(model, tmp_path / "task.safetensors")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(VptuneError, match="save takes a model made by vptune.create"):
        vptune.save("model", tmp_path / "task.safetensors")
    with pytest.raises(VptuneError, match="path must be a string or a PathLike, got 123"):
        vptune.load(123)


@pytest.mark.parametrize("failure", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 768000000000 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError(),
], ids=["torch-allocator", "python"])
def test_out_of_memory_is_one_line(monkeypatch, capsys, failure):
    def too_big(*args, **kwargs):
        raise failure

    monkeypatch.setattr(vptune.cli.params, "storage_report", too_big)
    code = main(["params", "--backbone", "vit_tiny_patch16_224", "--method", "linear", "--num-classes", "1000000000"])
    line = assert_one_line_error(code, capsys.readouterr().err, "out of memory", "use a smaller --batch-size")
    assert "enforce fail" not in line


def test_other_runtime_errors_are_not_hidden(monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("a bug, not a misuse")

    monkeypatch.setattr(vptune.cli.params, "storage_report", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["params", "--backbone", "vit_tiny_patch16_224", "--method", "linear"])
