"""`vptune plot` ablation figures from hand-made results rows, and `vptune tsne` of a tiny run."""

from __future__ import annotations

import contextlib
import io
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from vptune.cli.main import main
from vptune.experiments.figures import ablation_figure, varying_ablations
from vptune.experiments.results_table import ResultsError
from vptune.experiments.tsne import run_features, tsne_figure

from conftest import DIGIT_NAMES, SMALL_SPLITS, TINY_CLI, assert_one_line_error
from results_rows import ablation_rows, paper_rows, row, write_results

BLOCKS = [[1, 12], [1, 6], [7, 12]]


def _errorbar_data(ax):
    return {c.get_label(): c.lines[0].get_ydata().tolist() for c in ax.containers}


def test_depth_ablation_has_a_panel_per_group_a_line_per_method_and_references():
    fig = ablation_figure(ablation_rows("deep_blocks", BLOCKS), "deep_blocks")
    natural, structured = fig.axes
    assert natural.get_title() == "VTAB Natural (2 tasks)" and structured.get_title() == "VTAB Structured (1 task)"
    assert [t.get_text() for t in natural.get_xticklabels()] == ["1-12", "1-6", "7-12"]
    assert natural.get_xlabel() == "Prompt depth (blocks i-j)" and natural.get_ylabel() == "Mean test top-1 (%)"
    # Natural: cifar100 and dtd (+5 points), seeds 0 and 1 (+0, +1 point) -> 50 + 10*i + 0.5 + 2.5.
    assert _errorbar_data(natural) == {"vpt-deep": pytest.approx([53.0, 63.0, 73.0])}
    assert _errorbar_data(structured) == {"vpt-deep": pytest.approx([50.5, 60.5, 70.5])}
    # Error bars: the seed std (0.01 * sqrt(1/2)) in percent, averaged over tasks.
    caps = natural.containers[0].lines[2][0].get_segments()[0]
    assert caps[1][1] - caps[0][1] == pytest.approx(2 * 100 * 0.01 / 2 ** 0.5)
    references = {line.get_label(): line.get_ydata()[0] for line in natural.lines if line.get_label() in ("Linear", "Full")}
    assert references == pytest.approx({"Linear": 30.0, "Full": 90.0})
    assert [t.get_text() for t in natural.get_legend().get_texts()] == ["Linear", "Full", "vpt-deep"]
    assert "std over seeds" in fig._suptitle.get_text()


def test_other_settings_count_at_their_best_and_tune_rows_serve_when_final_rows_do_not_vary():
    rows = [row("dtd", "vpt-deep", 0, top1, stage="tune", setting={"lr": lr, "num_prompts": p})
            for p, lr, top1 in ((1, 0.1, 0.4), (1, 0.01, 0.6), (10, 0.1, 0.7), (10, 0.01, 0.5))]
    fig = ablation_figure(rows, "num_prompts")
    assert fig.axes[0].get_ylabel() == "Mean validation top-1 (%)"
    assert _errorbar_data(fig.axes[0]) == {"vpt-deep": pytest.approx([60.0, 70.0])}
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "10"]


def test_only_varying_settings_are_ablations():
    rows = ablation_rows("location", ["prepend", "add"]) + ablation_rows("output", ["cls", "prompt-pool"])
    assert varying_ablations(rows) == ["location", "output"]
    assert varying_ablations(paper_rows()) == []
    with pytest.raises(ResultsError, match="does not vary"):
        ablation_figure(paper_rows(), "num_prompts")


def test_plot_cli_writes_png_and_svg_per_ablation(tmp_path, capsys):
    prompts = write_results(ablation_rows("num_prompts", [1, 5, 10, 50]), tmp_path / "prompts")
    fractions = write_results(ablation_rows("train_fraction", [0.1, 1.0]), tmp_path / "fractions")
    assert main(["plot", str(prompts), str(fractions / "results.csv"), "--out", str(tmp_path / "figs")]) == 0
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["ablation-num_prompts.png", "ablation-num_prompts.svg",
                     "ablation-train_fraction.png", "ablation-train_fraction.svg"]
    with Image.open(tmp_path / "figs" / "ablation-num_prompts.png") as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 300
    svg = ET.parse(tmp_path / "figs" / "ablation-num_prompts.svg").getroot()
    assert svg.tag.endswith("svg")
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_plot_without_an_ablation_ends_in_one_line(tmp_path, capsys):
    results = write_results(paper_rows(), tmp_path / "sweep")
    code = main(["plot", str(results), "--out", str(tmp_path / "figs")])
    assert_one_line_error(code, capsys.readouterr().err, "no ablation setting")


@pytest.fixture(scope="module")
def tiny_run(small_digits_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tsne") / "run"
    args = ["train", "--data", small_digits_root, "--task", "digits", *TINY_CLI, "--method", "vpt-shallow",
            "--num-prompts", "2", "--epochs", "1", "--out", run_dir, "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([str(a) for a in args]) == 0
    return run_dir


def test_tsne_embeds_a_seeded_subset_of_the_test_split(tiny_run, small_digits_root):
    features, labels, names = run_features(tiny_run, max_images=40, quiet=True)
    assert features.shape == (40, 192) and np.isfinite(features).all()  # vit_tiny's width
    lines = (small_digits_root / "digits" / "test.txt").read_text().split("\n")
    chosen = np.sort(np.random.default_rng(0).permutation(SMALL_SPLITS["test"])[:40])
    assert labels.tolist() == [int(lines[i].split()[1]) for i in chosen]
    assert names == DIGIT_NAMES
    again, again_labels, _ = run_features(tiny_run, max_images=40, quiet=True)
    assert np.array_equal(labels, again_labels) and np.allclose(features, again)


def test_tsne_figure_has_a_panel_per_run_coloured_by_class(tiny_run, tmp_path, capsys):
    copy = shutil.copytree(tiny_run, tmp_path / "copy")  # a run given twice is refused; its copy is another run
    fig = tsne_figure([tiny_run, copy], max_images=50, quiet=True)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    shown = [t.get_text() for t in ax.get_legend().get_texts()]
    assert shown and set(shown) <= set(DIGIT_NAMES)
    assert sum(len(c.get_offsets()) for c in ax.collections) == 50
    assert ax.get_title() == "digits: vpt-shallow (50 test images)"
    out = tmp_path / "tsne.png"
    assert main(["tsne", str(tiny_run), "--out", str(out), "--max-images", "30", "--quiet"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 300


def test_tsne_refuses_a_bad_output_name(tiny_run, tmp_path, capsys):
    code = main(["tsne", str(tiny_run), "--out", str(tmp_path / "tsne.txt")])
    assert_one_line_error(code, capsys.readouterr().err, ".png")
