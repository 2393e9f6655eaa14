"""benchmarks/seg_offline.py without training: its commands, split subsets, forms and dry run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vptune.cli.main import build_parser
from vptune.cli.train import config_from_args
from vptune.segmentation.formats import load_seg_split

from conftest import load_benchmark

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "seg_offline.py"
seg_offline = load_benchmark(SCRIPT)


def test_train_commands_parse_into_the_form_settings():
    form = seg_offline.FULL
    command = seg_offline.train_command(form, Path("d"), "shapes-seg", "vpt-deep+bias", 0.01, 2, Path("o"))
    assert command[1:4] == ["-m", "vptune", "train"]
    config = config_from_args(build_parser().parse_args(command[3:]))
    assert (config.task, config.method, config.head, config.head_options) == (
        "shapes-seg", "vpt-deep+bias", "setr-pup", {"channels": 64})
    assert (config.img_size, config.epochs, config.batch_size, config.lr, config.seed) == (84, 4, 8, 0.01, 2)
    # Optimizer and schedule stay unset: the run fills in the segmentation recipe.
    assert config.optimizer is None and config.schedule is None and config.head_lr_multiplier is None


def test_forms_cover_the_five_methods_and_quick_is_small():
    assert list(seg_offline.FULL.methods.values()) == ["linear", "bias", "vpt-deep", "vpt-deep+bias", "full"]
    assert seg_offline.FULL.seeds == 3 and len(seg_offline.FULL.lrs) >= 2
    quick = seg_offline.QUICK
    assert (len(quick.tasks), quick.seeds, quick.epochs, len(quick.lrs)) == (1, 1, 1, 1)
    assert seg_offline.estimate_seconds(quick) < 0.05 * seg_offline.estimate_seconds(seg_offline.FULL)


def test_subset_links_seeded_pairs_that_load(tmp_path):
    source = tmp_path / "source" / "scenes"
    (source / "classes.txt").parent.mkdir(parents=True)
    (source / "classes.txt").write_text("background\nthing\n")
    for split, count in (("train", 6), ("val", 4), ("test", 5)):
        for kind in ("images", "masks"):
            (source / kind / split).mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (8, 8), (index, 0, 0)).save(source / "images" / split / f"{index:03d}.png")
            Image.fromarray(np.full((8, 8), index % 2, np.uint8)).save(source / "masks" / split / f"{index:03d}.png")
    sizes = {"train": 3, "val": 2, "test": 9}
    seg_offline.subset_task(source, tmp_path / "data" / "scenes", sizes)
    for split, kept in (("train", 3), ("val", 2), ("test", 5)):
        loaded = load_seg_split(tmp_path / "data", "scenes", split)
        assert len(loaded.samples) == kept and loaded.class_names == ["background", "thing"]
        assert all(image.stem == mask.stem for image, mask in loaded.samples)
    again = tmp_path / "again"
    seg_offline.subset_task(source, again, sizes)
    assert sorted(p.name for p in (again / "images" / "train").iterdir()) == sorted(
        p.name for p in (tmp_path / "data" / "scenes" / "images" / "train").iterdir())


@pytest.mark.parametrize("quick", [False, True])
def test_dry_run_prints_every_run(tmp_path, quick):
    args = [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path), *(["--quick"] if quick else [])]
    printed = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    form = seg_offline.QUICK if quick else seg_offline.FULL
    trains = [line for line in printed if " -m vptune train " in line]
    assert len(trains) == len(form.tasks) * len(form.methods) * (len(form.lrs) + form.seeds - 1)
    assert printed[0].startswith("estimated time: ") and not any(tmp_path.iterdir())
