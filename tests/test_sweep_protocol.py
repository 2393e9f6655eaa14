"""`vptune sweep`: rows of the results table, selection rule, interruption, launchers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import timm

from conftest import TINY_CLI, copy_task
from vptune.cli.main import main
from vptune.engine import trainer
from vptune.errors import VptuneError
from vptune.experiments.sweep import build_spec, run_sweep
from vptune.experiments.results_table import COLUMNS
from vptune.experiments.sweep.selection import choose
from vptune.experiments.sweep.trials import _validation as validation, tune_trials
from vptune.engine import TrainConfig

TINY = {"backbone": "vit_tiny_patch16_224", "pretrained": False, "img_size": 32, "epochs": 1, "batch_size": 32}
SIZES = {"train800": 64, "val200": 32, "train800val200": 96, "test": 48}
GRID = {"lr": [0.01, 0.0001], "weight_decay": [0.0, 0.001]}


@pytest.fixture(scope="module")
def two_tasks(small_digits_root, tmp_path_factory) -> Path:
    """Two tiny VTAB-layout tasks (the digits images under two names)."""
    root = tmp_path_factory.mktemp("sweep-tasks")
    for name in ("digits", "digits-b"):
        folder = copy_task(small_digits_root, root / "tmp", "digits")
        target = root / name
        folder.rename(target)
        for split, n in SIZES.items():
            lines = (target / f"{split}.txt").read_text().splitlines()
            start = 0 if name == "digits" else n  # different images per task
            (target / f"{split}.txt").write_text("\n".join(lines[start:start + n]) + "\n")
    return root


def tiny_backbone():
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=0)


def sweep_values(root: Path, out: Path, **overrides) -> dict:
    return {"data": str(root), "out": str(out), "tasks": ["digits", {"name": "digits-b", "group": "natural"}],
            "methods": ["linear", "vpt-deep"], "grid": GRID, "seeds": 2, **TINY, **overrides}


def rows_of(spec) -> list[dict]:
    """The rows `run_sweep` returns, as the JSON objects results.jsonl holds."""
    return [row.to_json() for row in run_sweep(spec, show=False)]


def comparable(rows: list[dict], out: Path) -> list[dict]:
    """Rows without wall times, with paths relative to the sweep folder."""
    kept = []
    for row in rows:
        row = {k: v for k, v in row.items() if k != "wall_seconds"}
        row["run_dir"] = str(Path(row["run_dir"]).relative_to(out))
        row["config"] = {**row["config"], "out": row["run_dir"]}
        kept.append(row)
    return kept


@pytest.fixture(scope="module")
def full_sweep(two_tasks, tmp_path_factory):
    """The 2 tasks x 2 methods x 2x2 grid x 2 seeds sweep, uninterrupted; counts epochs trained."""
    out = tmp_path_factory.mktemp("sweep-full")
    epochs = _count_epochs()
    with epochs:
        rows = rows_of(build_spec(sweep_values(two_tasks, out)))
    return out, rows, epochs.count


class _count_epochs:
    """Counts `_Run._train_epoch` calls while active."""

    def __enter__(self):
        self.count, self.original = 0, trainer._Run._train_epoch

        def counted(run, epoch):
            self.count += 1
            return self.original(run, epoch)

        trainer._Run._train_epoch = counted
        return self

    def __exit__(self, *exc):
        trainer._Run._train_epoch = self.original


def test_table_has_one_row_per_trial_seed_and_split(full_sweep):
    out, rows, epochs = full_sweep
    assert epochs == 16 + 8
    tune = [r for r in rows if r["stage"] == "tune"]
    final = [r for r in rows if r["stage"] == "final"]
    assert len(tune) == 2 * 2 * 4 and len(final) == 2 * 2 * 2
    assert [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()] == rows
    assert (out / "results.csv").read_text().splitlines()[0].split(",") == list(COLUMNS)
    assert len((out / "results.csv").read_text().splitlines()) == len(rows) + 1
    for row in tune:
        assert row["split"] == "val200" and row["n"] == SIZES["val200"] and row["seed"] == 0
        assert row["config"]["train_split"] == "train800" and row["config"]["eval_split"] == "val200"
        assert set(row["setting"]) == {"lr", "weight_decay"} and Path(row["run_dir"]).name == row["trial"]
    for row in final:
        assert row["split"] == "test" and row["n"] == SIZES["test"] and row["selected"] is True
        assert row["config"]["train_split"] == "train800val200" and row["config"]["eval_split"] == ""
    assert {r["group"] for r in rows if r["task"] == "digits-b"} == {"natural"}
    assert len({r["trial"] for r in rows}) == len(rows)
    for task in ("digits", "digits-b"):
        for method in ("linear", "vpt-deep"):
            arm = [r for r in tune if r["task"] == task and r["method"] == method]
            chosen = [r for r in arm if r["selected"]]
            assert len(chosen) == 1
            assert chosen[0]["top1"] == max(r["top1"] for r in arm)  # validation, last epoch
            finals = [r for r in final if r["task"] == task and r["method"] == method]
            assert sorted(r["seed"] for r in finals) == [0, 1]
            assert all(r["setting"] == chosen[0]["setting"] for r in finals)
    width, blocks, prompts, classes = 192, 12, 10, 10  # vit_tiny; vpt-deep's default 10 prompts
    head = width * classes + classes
    assert {r["tuned_params"] for r in rows if r["method"] == "linear"} == {head}
    assert {r["tuned_params"] for r in rows if r["method"] == "vpt-deep"} == {head + blocks * prompts * width}
    assert {r["backbone_params"] for r in rows} == {sum(p.numel() for p in tiny_backbone().parameters())}
    for row in rows:
        assert row["bytes_per_task"] == (Path(row["run_dir"]) / "task.safetensors").stat().st_size


def test_rerun_after_interruption_trains_nothing_twice_and_gives_the_same_table(two_tasks, full_sweep, tmp_path,
                                                                                monkeypatch):
    reference_out, reference, reference_epochs = full_sweep
    out = tmp_path / "sweep"
    spec = build_spec(sweep_values(two_tasks, out))
    saved = []
    original = trainer.save_checkpoint

    def interrupt(run_dir, state):  # killed right after the 7th trial's last checkpoint, before its task file
        original(run_dir, state)
        saved.append(run_dir)
        if len(saved) == 7:
            raise KeyboardInterrupt

    with _count_epochs() as first, monkeypatch.context() as patch:
        patch.setattr(trainer, "save_checkpoint", interrupt)
        with pytest.raises(KeyboardInterrupt):
            rows_of(spec)
    assert len((out / "results.jsonl").read_text().splitlines()) == 6
    with _count_epochs() as second:
        rows = rows_of(spec)
    assert first.count + second.count == reference_epochs  # the 7th trial resumed, none retrained
    assert comparable(rows, out) == comparable(reference, reference_out)
    with _count_epochs() as third:
        assert comparable(rows_of(spec), out) == comparable(rows, out)
    assert third.count == 0


def record(trial: str, top1_last: float, top1_best: float, lr: float, order: int, arm: str = "a") -> dict:
    return {"trial": trial, "arm": arm, "order": order, "config": {"lr": lr},
            "val": {"split": "val200", "last": {"top1": top1_last}, "best": {"top1": top1_best}}}


def test_selection_reads_the_final_epoch_and_breaks_ties_by_smaller_lr_then_grid_order():
    records = [
        record("high-best-epoch", 0.50, 0.95, 0.01, 0),
        record("tie-large-lr", 0.80, 0.80, 0.01, 1),
        record("tie-small-lr", 0.80, 0.81, 0.001, 2),
        record("tie-small-lr-later", 0.80, 0.80, 0.001, 3),
        record("other-arm", 0.10, 0.10, 0.1, 0, arm="b"),
        {"trial": "diverged", "arm": "a", "order": 4, "config": {"lr": 50.0}, "error": "loss became nan"},
    ]
    assert choose(records, "last-epoch") == {"a": "tie-small-lr", "b": "other-arm"}
    assert choose(records, "best-epoch") == {"a": "high-best-epoch", "b": "other-arm"}
    assert choose(list(reversed(records)), "last-epoch")["a"] == "tie-small-lr"


def test_validation_scores_come_from_the_runs_metrics(two_tasks, tmp_path):
    """Hand-written metrics.csv files: last-epoch and best-epoch pick different trials."""
    spec = build_spec(sweep_values(two_tasks, tmp_path, tasks=["digits"], methods=["linear"],
                                   grid={"lr": [0.01, 0.001]}, weight_decay=0.0, epochs=3, seeds=1))
    tune = tune_trials(spec)
    per_epoch = {tune[0].id: [0.5, 0.9, 0.6], tune[1].id: [0.7, 0.6, 0.7]}  # val top-1 of epochs 1..3
    records = []
    for trial in tune:
        trial.run_dir.mkdir(parents=True)
        (trial.run_dir / "metrics.csv").write_text("epoch,train_loss,val_top1,val_top5\n" + "".join(
            f"{i + 1},1.0,{v},1.0\n" for i, v in enumerate(per_epoch[trial.id])))
        summary = {"selected_epoch": 1 + per_epoch[trial.id].index(max(per_epoch[trial.id]))}
        val = validation(trial.run_dir, TrainConfig.from_dict(trial.config), summary)
        assert val["split"] == "val200" and val["last"] == {"epoch": 3, "top1": per_epoch[trial.id][2],
                                                            "top5": 1.0, "n": SIZES["val200"]}
        records.append({"trial": trial.id, "arm": trial.arm, "order": trial.order, "config": trial.config,
                        "val": val})
    assert choose(records, "last-epoch") == {tune[0].arm: tune[1].id}  # 0.7 > 0.6 at epoch 3
    assert choose(records, "best-epoch") == {tune[0].arm: tune[0].id}  # 0.9 at epoch 2


# ------------------------------------------------------------ launchers


def small_values(root: Path, out: Path, **overrides) -> dict:
    """One task, two methods, lr 0.01 or 1e-5 (a clear choice), one seed."""
    return sweep_values(root, out, **{"tasks": ["digits"], "grid": {"lr": [0.01, 0.00001]}, "weight_decay": 0.0,
                                      "seeds": 1, **overrides})


@pytest.fixture(scope="module")
def local_small(two_tasks, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-local")
    return rows_of(build_spec(small_values(two_tasks, out)))


def chosen_and_test(rows: list[dict]) -> tuple[list, list]:
    chosen = sorted((r["method"], r["setting"]["lr"]) for r in rows if r["stage"] == "tune" and r["selected"])
    tests = sorted((r["method"], r["seed"], r["top1"]) for r in rows if r["stage"] == "final")
    return chosen, tests


def assert_same_outcome(rows: list[dict], reference: list[dict]) -> None:
    chosen, tests = chosen_and_test(rows)
    ref_chosen, ref_tests = chosen_and_test(reference)
    assert chosen == ref_chosen
    # Another process may run other BLAS kernels: allow one test image of difference.
    assert [t[:2] for t in tests] == [t[:2] for t in ref_tests]
    assert all(abs(a[2] - b[2]) <= 1 / SIZES["test"] + 1e-6 for a, b in zip(tests, ref_tests))


def test_worker_processes_give_the_local_outcome(two_tasks, local_small, tmp_path):
    rows = rows_of(build_spec(small_values(two_tasks, tmp_path, workers=2)))
    assert_same_outcome(rows, local_small)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=80 * 1024**2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_tune_gives_the_local_outcome_and_restores(two_tasks, local_small, local_ray, tmp_path):
    spec = build_spec(small_values(two_tasks, tmp_path, launcher="ray"))
    rows = rows_of(spec)
    assert_same_outcome(rows, local_small)
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "ray").iterdir()) == ["final", "tune"]
    with _count_epochs() as again:
        assert comparable(rows_of(spec), tmp_path) == comparable(rows, tmp_path)
    assert again.count == 0


# ------------------------------------------------------------ command line and spec errors


def test_cli_sweep_from_yaml_and_flags(two_tasks, tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(
        f"data: {two_tasks}\ntasks: [digits]\nmethods:\n  vpt-deep:\n    grid: {{num_prompts: [1, 2]}}\n"
        "grid: {lr: [1e-2]}\nseeds: 1\nepochs: 1\nbatch_size: 32\nweight_decay: 0\n"
    )
    code = main(["sweep", "--config", str(config), *TINY_CLI, "--out", str(tmp_path / "out"), "--quiet",
                 "--grid", "vpt-deep:deep_blocks=1-2,2-3", "--vary", "train_fraction=1.0,0.5"])
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    tune = [r for r in rows if r["stage"] == "tune"]
    assert len(tune) == 2 * 2 * 2  # num_prompts x deep_blocks, for each train_fraction
    assert {(r["setting"]["train_fraction"], r["setting"]["num_prompts"], tuple(r["setting"]["deep_blocks"]))
            for r in tune} == {(f, p, b) for f in (1.0, 0.5) for p in (1, 2) for b in ((1, 2), (2, 3))}
    assert all(r["config"]["lr"] == 0.01 and r["config"]["weight_decay"] == 0 for r in rows)
    assert all(r["config"]["method_options"]["num_prompts"] == r["setting"]["num_prompts"] for r in rows)
    final = [r for r in rows if r["stage"] == "final"]
    assert sorted(r["setting"]["train_fraction"] for r in final) == [0.5, 1.0]  # one choice per value
    assert sum(r["selected"] for r in tune) == 2


@pytest.mark.parametrize("change, message", [
    ({"methods": ["vpt-dep"]}, "did you mean vpt-deep"),
    ({"grid": {"seed": [1, 2]}}, "seeds are not tuned"),
    ({"grid": {"task": ["x"]}}, "set by the sweep"),
    ({"vary": {"deep_blocks": ["1-x"]}}, "--deep-blocks takes I-J"),
    ({"grid": {"num_promts": [1]}}, "has no option num_promts"),
    ({"select": "best"}, "--select 'best'"),
    ({"grid": {"lr": [0.01, 0.01]}}, "lr lists 0.01 twice"),
    ({"grid": {"lr": [1, 1.0]}}, "lr lists 1.0 twice"),
    ({"grid": {"lr": [0.01, None]}}, r"lr holds an empty value \(null\)"),
])
def test_bad_sweeps_end_in_one_line(two_tasks, tmp_path, change, message):
    with pytest.raises(VptuneError, match=message):
        rows_of(build_spec(small_values(two_tasks, tmp_path, **change)))


@pytest.mark.parametrize("flags, message", [
    (["--grid", "lr"], "grid values take [METHOD:]KEY=V1,V2"),
    (["--grid", "vpt-deep:num_prompts=1,5"], "names method 'vpt-deep', which the sweep does not run"),
    (["--select", "best"], "invalid choice"),
])
def test_cli_misuse_ends_in_one_line(two_tasks, tmp_path, capsys, flags, message):
    try:
        code = main(["sweep", "--data", str(two_tasks), "--task", "digits", "--method", "linear",
                     "--out", str(tmp_path), *flags])
    except SystemExit as exit_info:  # argparse's own usage errors
        code = exit_info.code
    assert code != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_segmentation_task_is_refused_in_one_line(tmp_path):
    task = tmp_path / "data" / "scenes"
    for kind in ("images", "masks"):
        (task / kind / "train").mkdir(parents=True)
    Image.new("RGB", (14, 14)).save(task / "images" / "train" / "a.png")
    Image.new("L", (14, 14)).save(task / "masks" / "train" / "a.png")
    (task / "classes.txt").write_text("background\nthing\n")
    values = {"data": str(tmp_path / "data"), "tasks": ["scenes"], "methods": ["linear"], "out": str(tmp_path / "out")}
    with pytest.raises(VptuneError, match="'scenes' is a segmentation task; vptune sweep runs classification"):
        rows_of(build_spec(values))
