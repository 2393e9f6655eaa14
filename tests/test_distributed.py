"""`torchrun --nproc_per_node 2 -m vptune train/eval` on CPU (gloo): one run folder, same accuracy as one process."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import pytest
import torch

from vptune.cli.main import main
from vptune.engine import evaluate_run
from vptune.engine.distributed import Dist
from vptune.engine.loaders import build_loader
from vptune.errors import VptuneError

from conftest import TINY_CLI, run_vptune
from ddp_tuned_tensors import train_and_dump

EPOCHS = 2
TEST_IMAGES = 797  # odd: 399 + 398 over two ranks, so padding or duplicates would show in n


def torchrun() -> tuple[str, ...]:
    """Interpreter arguments that start `vptune` under torchrun with two CPU processes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return ("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port), "-m", "vptune")


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_two_processes_train_like_one(digits_root, tmp_path):
    args = ["train", "--data", digits_root, "--task", "digits", *TINY_CLI, "--method", "vpt-deep", "--epochs", EPOCHS,
            "--batch-size", 32, "--lr", 0.01]
    runs = tmp_path / "runs"
    two = run_vptune(*args, "--out", runs / "two", prefix=torchrun())
    assert two.returncode == 0, two.stderr
    # Only rank 0 prints and writes: one epoch line each, one summary, one run folder with one event file.
    lines = two.stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines[:-1]] == [f"epoch {e}" for e in range(1, EPOCHS + 1)]
    assert json.loads(lines[-1]) == json.loads((runs / "two" / "summary.json").read_text())
    assert [p.name for p in runs.iterdir()] == ["two"]
    assert len(list((runs / "two" / "tensorboard").iterdir())) == 1
    assert json.loads((runs / "two" / "environment.json").read_text())["world_size"] == 2
    rows_two = metrics_rows(runs / "two")
    assert len(rows_two) == EPOCHS

    one = tmp_path / "one"
    assert main([str(a) for a in [*args, "--out", one, "--quiet"]]) == 0
    rows_one = metrics_rows(one)
    # Train metrics are reduced over both ranks' halves, so they describe all 800 images like one process's.
    for key in ("train_loss", "train_top1", "val_top1"):
        assert float(rows_two[-1][key]) == pytest.approx(float(rows_one[-1][key]), abs=0.1), key
    assert [r["lr"] for r in rows_two] == [r["lr"] for r in rows_one]  # the same schedule, step for step

    evaluated = run_vptune("eval", runs / "two", "--split", "test", "--quiet", prefix=torchrun())
    assert evaluated.returncode == 0, evaluated.stderr
    [line] = evaluated.stdout.splitlines()  # rank 0 alone prints
    two_test = json.loads(line)
    assert two_test["n"] == TEST_IMAGES
    assert two_test["top1"] == pytest.approx(evaluate_run(runs / "two", "test", quiet=True)["top1"], abs=0.005)
    one_test = evaluate_run(one, "test", quiet=True)
    assert one_test["n"] == TEST_IMAGES
    assert min(two_test["top1"], one_test["top1"]) > 0.3  # chance is 0.1
    assert two_test["top1"] == pytest.approx(one_test["top1"], abs=0.1)


@pytest.mark.slow
def test_two_ranks_hold_identical_tensors_equal_to_one_process_with_the_global_batch(small_digits_root, tmp_path):
    # 256 images in batches of 48: five full batches, then 16 (8 per rank).
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir(), one.mkdir()
    script = Path(__file__).with_name("ddp_tuned_tensors.py")
    done = run_vptune(small_digits_root, two, 48, prefix=torchrun()[:-2] + (str(script),))
    assert done.returncode == 0, done.stderr
    train_and_dump(small_digits_root, one, 48)

    ranks = [torch.load(two / f"rank{r}.pt") for r in (0, 1)]
    single = torch.load(one / "rank0.pt")
    assert ranks[0].keys() == single.keys() and "prompt.embeddings" in single
    for name, value in single.items():
        assert ranks[0][name].equal(ranks[1][name]), name  # bit-identical on both ranks
        torch.testing.assert_close(ranks[0][name], value, atol=1e-5, rtol=0)


def test_each_global_batch_is_split_equally_between_ranks():
    dataset = torch.utils.data.TensorDataset(torch.arange(101))
    def batches(ctx, batch_size):
        return [b[0].tolist() for b in build_loader(dataset, batch_size, ctx, shuffle=True, seed=3, epoch=2,
                                                     num_workers=0)]
    one = batches(Dist(), 20)
    ranks = [batches(Dist(rank, 2), 20) for rank in (0, 1)]
    assert [len(b) for b in ranks[0]] == [len(b) for b in ranks[1]] == [10] * 5
    # Together the ranks' k-th batches are one process's k-th batch; the odd image out is left out.
    assert [sorted(a + b) for a, b in zip(*ranks)] == [sorted(b) for b in one][:5]
    assert sum(map(len, one)) == 101 and sum(len(b) for r in ranks for b in r) == 100
    with pytest.raises(VptuneError, match="--batch-size 21 must be a multiple of the 2 processes"):
        batches(Dist(0, 2), 21)
