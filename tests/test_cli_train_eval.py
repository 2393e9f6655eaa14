"""`vptune train` then `eval`, `info` and `predict` on its run folder; YAML configs; --help."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from vptune.cli.main import build_parser, main
from vptune.cli.train import config_from_args
from vptune.engine import TrainConfig
from vptune.engine.evaluate import load_run_model, run_config
from vptune.engine.runfolder import MARKER

from conftest import DIGIT_NAMES, SMALL_SPLITS, TINY_CLI

EPOCHS = 2


@pytest.fixture(scope="module")
def run(small_digits_root, tmp_path_factory) -> tuple[Path, str]:
    """A finished 2-epoch vpt-deep run on small digits, and what `vptune train` printed."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    args = ["train", "--data", small_digits_root, "--task", "digits", *TINY_CLI, "--method", "vpt-deep",
            "--num-prompts", "4", "--epochs", EPOCHS, "--batch-size", 32, "--out", run_dir]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main([str(a) for a in args]) == 0
    return run_dir, stdout.getvalue()


def test_train_prints_one_line_per_epoch_then_the_summary(run):
    run_dir, stdout = run
    lines = stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines[:-1]] == [f"epoch {e}" for e in range(1, EPOCHS + 1)]
    assert json.loads(lines[-1]) == json.loads((run_dir / "summary.json").read_text())


def test_eval_last_line_is_one_json_object(run, capsys):
    run_dir, _ = run
    assert main(["eval", str(run_dir), "--split", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    result = json.loads(lines[-1])
    assert result["split"] == "test"
    assert result["n"] == SMALL_SPLITS["test"]
    assert 0.0 <= result["top1"] <= 1.0
    assert len(lines) > 1  # the table above it

    assert main(["eval", str(run_dir), "--split", "test", "--quiet"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [result]


def test_run_folder_holds_every_record(run):
    run_dir, _ = run
    assert {p.name for p in run_dir.iterdir()} == {
        "vptune-run.json", "config.yaml", "environment.json", "metrics.csv", "tensorboard", "checkpoint.pt",
        "task.safetensors", "summary.json", ".lock",
    }
    config = run_config(run_dir)  # re-loads as a TrainConfig
    assert isinstance(config, TrainConfig)
    assert (config.train_split, config.eval_split, config.protocol, config.img_size) == ("train800", "val200", "vtab", 32)
    assert config.method_options["num_prompts"] == 4 and config.method_options["deep_blocks"] == [1, 12]

    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    assert {"lr", "train_loss", "train_top1", "val_top1", "seconds"} <= set(rows[0])
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))

    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["torch"] == torch.__version__ and environment["world_size"] == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["selected_by"] == "val200 top1" and 1 <= summary["selected_epoch"] <= EPOCHS
    assert summary["skipped_images"] == {"train800": 0, "val200": 0}
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["next_epoch"] == EPOCHS

    model = load_run_model(run_dir, config)
    assert model.class_names == DIGIT_NAMES
    assert summary["tuned_parameters"] == sum(t.numel() for t in load_file(run_dir / "task.safetensors").values())


def test_a_run_written_before_the_marker_is_still_evaluated(run, tmp_path, capsys):
    older = Path(shutil.copytree(run[0], tmp_path / "older"))
    (older / MARKER).unlink()  # what runs of earlier releases hold: config.yaml beside the run's files
    assert main(["eval", str(older), "--split", "test", "--quiet"]) == 0
    assert main(["eval", str(run[0]), "--split", "test", "--quiet"]) == 0
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {k: v for k, v in first.items() if k != "run"} == {k: v for k, v in second.items() if k != "run"}


def test_info_describes_the_run(run, capsys):
    run_dir, _ = run
    assert main(["info", str(run_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["method"], info["backbone"], info["num_classes"], info["img_size"]) == (
        "vpt-deep", "vit_tiny_patch16_224", 10, 32)
    assert info["summary"] == json.loads((run_dir / "summary.json").read_text())
    assert main(["info", str(run_dir)]) == 0
    assert "vpt-deep" in capsys.readouterr().out


def test_predict_prints_class_names(run, small_digits_root, capsys):
    run_dir, _ = run
    images = [small_digits_root / "digits" / "images" / "test" / f"00000{i}.png" for i in range(2)]
    assert main(["predict", str(run_dir), *map(str, images), "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, image in zip(lines, images):
        path, ranked = line.split(": ", 1)
        assert path == str(image)
        names = [entry.rsplit(" ", 1)[0] for entry in ranked.split(", ")]
        assert len(names) == 3 and set(names) <= set(DIGIT_NAMES)


def _config(argv: list[str]) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_yaml_fills_the_same_fields_as_flags_and_flags_win(tmp_path):
    flags = ["--data", "d", "--task", "t", "--backbone", "vit_tiny_patch16_224", "--no-pretrained", "--img-size", "32",
             "--method", "vpt-deep", "--num-prompts", "5", "--deep-blocks", "2-4", "--epochs", "3", "--batch-size", "8",
             "--lr", "0.01", "--seed", "7", "--eval-split", "none", "--skip-bad-images", "--out", "r"]
    values = {"data": "d", "task": "t", "backbone": "vit_tiny_patch16_224", "pretrained": False, "img-size": 32,
              "method": "vpt-deep", "num_prompts": 5, "deep_blocks": "2-4", "epochs": 3, "batch_size": 8, "lr": 0.01,
              "seed": 7, "eval_split": "none", "skip_bad_images": True, "out": "r"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    from_flags, from_yaml = _config(flags), _config(["--config", str(path)])
    assert from_yaml == from_flags
    assert from_yaml.method_options == {"num_prompts": 5, "deep_blocks": [2, 4]}
    assert from_yaml.eval_split == "" and from_yaml.pretrained is False

    overridden = _config(["--config", str(path), "--epochs", "9", "--num-prompts", "6", "--eval-split", "val200"])
    assert (overridden.epochs, overridden.method_options["num_prompts"], overridden.eval_split) == (9, 6, "val200")
    assert overridden.method_options["deep_blocks"] == [2, 4] and overridden.lr == 0.01


def test_a_runs_config_yaml_is_a_config_file(run):
    run_dir, _ = run
    assert _config(["--config", str(run_dir / "config.yaml")]) == run_config(run_dir)


def _subparsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of every subcommand, nested ones (`data prepare`) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subparsers(sub, (*path, name))


def test_help_of_every_subcommand_shows_every_flags_help(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping, so help texts appear whole
    commands = list(_subparsers(build_parser()))
    assert {path[0] for path, _ in commands} == {"train", "sweep", "eval", "predict", "info", "params", "data", "demo",
                                                   "report", "plot", "tsne", "serve", "push"}
    for path, parser in [((), build_parser()), *commands]:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0
        shown = " ".join(capsys.readouterr().out.split())
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{' '.join(path)} {action.option_strings or action.dest} has no help text"
            assert " ".join((action.help % {"default": action.default}).split()) in shown, (path, action.dest)
