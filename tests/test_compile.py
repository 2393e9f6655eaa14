"""`--compile`: the same run through torch.compile trains to the same numbers."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import pytest
import torch
from torch._dynamo.exc import TorchDynamoException

from vptune.cli.main import main

from conftest import TINY_CLI


def _train(data: Path, out: Path, *extra: str) -> list[dict[str, str]]:
    # No prompt dropout: compiled dropout draws its masks from inductor's own generator.
    args = ["train", "--data", str(data), "--task", "digits", *TINY_CLI, "--method", "vpt-deep", "--num-prompts", "4",
            "--prompt-dropout", "0", "--epochs", "1", "--batch-size", "64", "--quiet", "--out", str(out), *extra]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    with (out / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_compiled_run_matches_eager_run(small_digits_root, tmp_path):
    eager = _train(small_digits_root, tmp_path / "eager")
    compiled = _train(small_digits_root, tmp_path / "compiled", "--compile")
    for key in ("train_loss", "train_top1", "val_top1"):
        assert float(compiled[0][key]) == pytest.approx(float(eager[0][key]), abs=1e-4), key


def test_compile_failure_is_one_line_naming_the_way_out(small_digits_root, tmp_path, monkeypatch, capsys):
    class Broken(torch.nn.Module):
        def forward(self, images):
            raise TorchDynamoException("inductor: no working C++ compiler\nlong details")

    def broken_compile(module):
        return Broken()

    monkeypatch.setattr(torch, "compile", broken_compile)
    args = ["train", "--data", str(small_digits_root), "--task", "digits", *TINY_CLI, "--epochs", "1", "--quiet",
            "--compile", "--out", str(tmp_path / "run")]
    assert main(args) == 1
    message = capsys.readouterr().err.strip()
    assert message == ("vptune: error: torch.compile failed (inductor: no working C++ compiler); "
                       "run without --compile")
