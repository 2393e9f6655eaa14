"""`vptune report`: means, stds, group means, wins over Full, Total params and chosen settings
of hand-made results rows, against numbers worked out by hand."""

from __future__ import annotations

import csv
import io
import json

import pytest

from vptune.accounting import total_multiple
from vptune.cli.main import main
from vptune.experiments.report import build_report, to_csv, to_json, to_markdown
from vptune.experiments.results_table import COLUMNS, ResultRow, ResultsError, ResultsTable, load_results, read_rows
from vptune.experiments.seeds import SeedScores
from vptune.experiments.sweep import format_summary, summary
from vptune.experiments.task_groups import read_groups, task_groups

from results_rows import ablation_rows, paper_rows, row, write_results


@pytest.fixture
def report():
    return build_report(paper_rows())


def test_task_means_and_sample_stds_over_seeds(report):
    cifar = report.scores["full"]["cifar100"]
    assert (cifar.mean, cifar.n) == (pytest.approx(0.62), 3)
    assert cifar.std == pytest.approx(0.02)  # sample std of 0.60, 0.62, 0.64
    assert report.scores["linear"]["dtd"].std == pytest.approx(0.04)
    assert report.scores["vpt-deep"]["eurosat"].std == pytest.approx(0.02 / 2 ** 0.5)
    one_seed = report.scores["vpt-deep"]["dsprites_loc"]
    assert (one_seed.mean, one_seed.std, one_seed.n) == (pytest.approx(0.45), None, 1)


def test_groups_follow_the_paper_and_means_follow_the_printed_rule(report):
    assert report.groups == {"natural": ["cifar100", "dtd"], "specialized": ["eurosat"], "structured": ["dsprites_loc"]}
    assert report.group_means["full"] == pytest.approx({"natural": 0.56, "specialized": 0.91, "structured": 0.40})
    assert report.group_means["vpt-deep"]["natural"] == pytest.approx(0.615)
    assert report.mean_of_groups == pytest.approx({"full": 1.87 / 3, "linear": 1.69 / 3, "vpt-deep": 2.005 / 3})
    assert report.mean_of_tasks == pytest.approx({"full": 0.6075, "linear": 0.565, "vpt-deep": 0.655})


def test_wins_over_full_per_group(report):
    assert report.wins == {
        "linear": {"natural": [1, 2], "specialized": [0, 1], "structured": [0, 1]},
        "vpt-deep": {"natural": [2, 2], "specialized": [1, 1], "structured": [1, 1]},
    }
    no_full = build_report([r for r in paper_rows() if r.method != "full"])
    assert no_full.wins is None
    assert "beats Full" not in to_markdown(no_full)


def test_total_params_for_the_tasks_in_the_table(report):
    # T = 4 tasks, backbone 1000: Full stores 4 copies of 1010; others the backbone plus per-task sets.
    assert report.total_params == pytest.approx({"full": 4.04, "linear": 1.04, "vpt-deep": 1.24})
    assert report.tuned_params["vpt-deep"] == {"cifar100": 100, "dtd": 60, "eurosat": 40, "dsprites_loc": 40}
    assert total_multiple(1000, 60, 4, shares_backbone=True) == pytest.approx(1.24)


def test_chosen_settings_come_from_selected_tune_rows(report):
    assert report.settings["dtd"]["vpt-deep"] == [{"setting": {"lr": 0.01}, "seeds": [0, 1, 2]}]
    assert report.settings["eurosat"]["full"] == [{"setting": {"lr": 0.001}, "seeds": [0, 1]}]


def test_markdown_bolds_the_best_non_full_value_per_column(report):
    text = to_markdown(report)
    assert "| linear | **70.00** ± 0.00 (n=3) | 44.00 ± 4.00 (n=3) | 57.00 |" in text
    assert "| vpt-deep | 66.00 ± 1.00 (n=3) | **57.00** ± 2.00 (n=3) | **61.50** |" in text
    # Full beats every method on nothing here but is never bolded, even where it is highest.
    assert "| full | 62.00 ± 2.00 (n=3) | 50.00 ± 0.00 (n=3) | 56.00 |" in text
    assert "| vpt-deep | 1.24x | **61.50** | **94.00** | **45.00** | **66.83** | **65.50** |" in text
    assert "| vpt-deep | 2 of 2 | 1 of 1 | 1 of 1 |" in text
    assert "| dtd | vpt-deep | lr=0.01 | 0, 1, 2 |" in text
    assert "### VTAB Specialized (1 task)" in text and "### VTAB Natural (2 tasks)" in text
    assert "mean over the group's tasks" in text and "Mean of tasks: plain mean over all tasks" in text
    # Every table row has as many cells as its header.
    tables = [block.splitlines() for block in text.split("\n\n") if block.startswith("|")]
    assert len(tables) == 9  # 3 groups, summary, VTAB-1k averages, share and PPT, wins, parameters, settings
    assert all(len({line.count("|") for line in table}) == 1 for table in tables)


def test_csv_and_json_outputs_parse_to_the_same_numbers(report):
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    by_key = {(r["section"], r["method"], r["name"]): r for r in rows}
    assert float(by_key["task", "full", "cifar100"]["value"]) == pytest.approx(0.62)
    assert float(by_key["task", "full", "cifar100"]["std"]) == pytest.approx(0.02)
    assert float(by_key["group", "linear", "natural"]["value"]) == pytest.approx(0.57)
    assert float(by_key["overall", "vpt-deep", "mean_of_tasks"]["value"]) == pytest.approx(0.655)
    assert float(by_key["total_params", "full", "T=4"]["value"]) == pytest.approx(4.04)
    assert (by_key["wins_over_full", "vpt-deep", "natural"]["value"], by_key["wins_over_full", "vpt-deep", "natural"]["count"]) == ("2", "2")
    assert json.loads(by_key["setting", "linear", "dtd"]["value"]) == {"lr": 0.1}
    data = json.loads(to_json(report))
    assert data["scores"]["linear"]["eurosat"]["mean"] == pytest.approx(0.82)
    assert data["mean_of_groups"]["vpt-deep"] == pytest.approx(2.005 / 3)
    assert data["wins"]["linear"]["natural"] == [1, 2]
    assert "averaging" in data["rules"]


def test_csv_and_jsonl_tables_load_to_the_same_rows(tmp_path):
    folder = write_results(paper_rows(), tmp_path / "sweep")
    from_jsonl, from_csv = load_results([folder / "results.jsonl"]), load_results([folder / "results.csv"])
    assert from_csv == from_jsonl == paper_rows()
    assert to_json(build_report(from_csv)) == to_json(build_report(from_jsonl))
    assert load_results([folder]) == from_jsonl


def test_rows_of_failed_trials_are_left_out(tmp_path):
    failed = row("dtd", "vpt-deep", 5, None, error="TrainingError: loss is nan")
    folder = write_results(paper_rows() + [failed], tmp_path / "sweep")
    for table in ("results.jsonl", "results.csv"):
        notes = []
        assert load_results([folder / table], notes) == paper_rows()
        assert notes == ["left out 1 row of failed trials (their error column is set)"]


def test_report_says_what_it_left_out_once_after_the_report(tmp_path, capsys):
    failed = row("dtd", "vpt-deep", 5, None, error="TrainingError: loss is nan")
    folder = write_results(paper_rows() + [failed], tmp_path / "sweep")
    assert main(["report", str(folder), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["scores"]["vpt-deep"]["dtd"]["n"] == 3  # the failed seed is not counted
    assert captured.err == "vptune: left out 1 row of failed trials (their error column is set)\n"


def test_group_comes_from_user_yaml_then_row_field_then_the_paper(tmp_path):
    rows = [row("fashion-mnist", "linear", 0, 0.8, group="natural"), row("shapes-count", "linear", 0, 0.5),
            row("pcam", "linear", 0, 0.7), row("oxford_flowers", "linear", 0, 0.6), row("flowers102", "linear", 0, 0.6)]
    assert task_groups(rows) == {"natural": ["fashion-mnist", "flowers102"], "specialized": ["pcam"],
                                 "fgvc": ["oxford_flowers"], "other": ["shapes-count"]}
    groups_file = tmp_path / "groups.yaml"
    groups_file.write_text("mine: [shapes-count, fashion-mnist]\n")
    assert task_groups(rows, read_groups(groups_file)) == {
        "mine": ["fashion-mnist", "shapes-count"], "natural": ["flowers102"], "specialized": ["pcam"],
        "fgvc": ["oxford_flowers"]}


def test_ablation_settings_become_separate_method_rows():
    report = build_report(ablation_rows("num_prompts", [1, 10]))
    assert report.methods == ["full", "linear", "vpt-deep (num_prompts=1)", "vpt-deep (num_prompts=10)"]
    assert report.scores["vpt-deep (num_prompts=10)"]["cifar100"].mean == pytest.approx(0.605)


def test_cli_writes_each_format(tmp_path, capsys):
    folder = write_results(paper_rows(), tmp_path / "sweep")
    assert main(["report", str(folder)]) == 0
    assert "## Summary: test top-1 (%)" in capsys.readouterr().out
    out = tmp_path / "report.json"
    assert main(["report", str(folder / "results.csv"), "--format", "json", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["total_params"]["linear"] == pytest.approx(1.04)
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert main(["report", str(folder), "--format", "csv"]) == 0
    assert next(csv.reader(io.StringIO(capsys.readouterr().out))) == ["section", "method", "name", "value", "std", "count"]


def _write(path, text):
    path.write_text(text)
    return path.parent


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p, "holds no results.jsonl"),
    (lambda p: _write(p / "results.jsonl", "{not json\n"), "not a JSON object"),
    (lambda p: _write(p / "results.jsonl", '{"task": "dtd"}\n'), "no value for method, stage, seed, top1"),
])
def test_bad_tables_end_in_one_line(tmp_path, capsys, make, fragment):
    from conftest import assert_one_line_error

    code = main(["report", str(make(tmp_path))])
    assert_one_line_error(code, capsys.readouterr().err, fragment)


def test_tables_without_final_rows_or_mixing_backbones_are_refused():
    with pytest.raises(ResultsError, match="no final-stage rows"):
        build_report([r for r in paper_rows() if r.stage == "tune"])
    with pytest.raises(ResultsError, match="different sizes"):
        build_report(paper_rows() + [row("dtd", "lora", 0, 0.5, backbone_params=5)])


def test_a_result_row_round_trips_through_csv_and_json():
    full = row("dtd", "vpt-deep", 2, 0.5625, stage="tune", setting={"lr": 0.01, "deep_blocks": [1, 6]},
               selected=True, top5=0.875, auc=None, error=None, group="natural")
    failed = row("dtd", "vpt-deep", 0, None, error="TrainingError: loss became nan", tuned_params=None)
    for value in (full, failed):
        assert ResultRow.from_json(json.loads(json.dumps(value.to_json()))) == value
        cells = next(csv.DictReader(io.StringIO(to_csv_text(value))))
        assert ResultRow.from_csv(cells) == value
    assert list(full.to_json()) == list(COLUMNS) == list(full.to_csv())
    # Tables written before the typed row: Python's True/False and empty cells for None.
    old = {**full.to_csv(), "selected": "True", "auc": "", "seed": "2.0"}
    assert ResultRow.from_csv(old) == full


def to_csv_text(value: ResultRow) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerow(value.to_csv())
    return buffer.getvalue()


def test_one_seed_has_no_spread_anywhere():
    one = [row("dtd", "linear", 0, 0.5)]
    report = build_report(one)
    assert report.scores["linear"]["dtd"] == SeedScores(0.5, None, 1)
    assert "| linear | **50.00** (n=1) | **50.00** |" in to_markdown(report)
    (task_row,) = [r for r in csv.DictReader(io.StringIO(to_csv(report))) if r["section"] == "task"]
    assert (task_row["std"], task_row["count"]) == ("", "1")
    assert json.loads(to_json(report))["scores"]["linear"]["dtd"] == {"mean": 0.5, "std": None, "n": 1}
    tune = row("dtd", "linear", 0, 0.75, stage="tune", selected=True)
    text = format_summary(summary([tune, *one]))
    assert "0.5000 (n=1)" in text and "±" not in text
    assert SeedScores(0.5, 0.01, 3).text() == "0.5000 ± 0.0100 (n=3)"


def test_a_sweep_table_of_an_earlier_version_gains_the_new_columns_when_a_row_is_appended(tmp_path):
    old = [r for r in COLUMNS if r != "head_params"]  # the columns before head_params existed
    first = row("dtd", "linear", 0, 0.5)
    (tmp_path / "results.jsonl").write_text(json.dumps({k: v for k, v in first.to_json().items() if k in old}) + "\n")
    with (tmp_path / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=old)
        writer.writeheader()
        writer.writerow({k: v for k, v in first.to_csv().items() if k in old})
    ResultsTable(tmp_path).append(row("dtd", "linear", 1, 0.6, head_params=10))
    assert (tmp_path / "results.csv").read_text().splitlines()[0].split(",") == list(COLUMNS)
    rows = read_rows(tmp_path / "results.csv")
    assert [(r.seed, r.head_params) for r in rows] == [(0, None), (1, 10)]
