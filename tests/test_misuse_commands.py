"""Misuse of report, plot, tsne, sweep, predict, data prepare and serve's start-up: each case ends in one
`vptune: error:` line and a non-zero exit, with no traceback, and nothing is written or overwritten."""

from __future__ import annotations

import csv
import io
import json
import shutil
import socket
from pathlib import Path

import pytest
import timm
import torch

import vptune
import vptune.files
import vptune.serve.app
from vptune.cli.main import main
from vptune.engine import TrainConfig
from vptune.engine.config import write_yaml
from vptune.engine.runfolder import mark_run_folder
from vptune.experiments.sweep import build_spec
from vptune.experiments.sweep.folder import record_sweep

from conftest import TINY_CLI, assert_one_line_error, tiny_vit
from results_rows import ablation_rows, paper_rows, write_results

SWEEP_SETTINGS = ["--data", "{data}", "--task", "digits", *TINY_CLI, "--epochs", "1", "--seeds", "1", "--quiet"]
SWEEP = ["sweep", "--method", "linear", *SWEEP_SETTINGS]


def sweep_with(*flags: str, out: str = "{tmp}/new-sweep") -> list[str]:
    return [*SWEEP, *flags, "--out", out]


def serve_with(*flags: str) -> list[str]:
    return ["serve", "--tasks", "{tmp}/tasks", *flags]


CASES = {
    "report": [
        (["report", "{tmp}/sweep", "--out", "{tmp}/sweep/results.jsonl"], "is one of this command's inputs"),
        (["report", "{tmp}/sweep/results.csv", "--out", "{tmp}/sweep/results.jsonl"], "is one of this command's inputs"),
        (["report", "{tmp}/sweep", "--groups", "{tmp}/groups.yaml", "--out", "{tmp}/groups.yaml"],
         "is one of this command's inputs"),
        (["report", "{tmp}/sweep", "--out", "{tmp}/notes"], "--out '{tmp}/notes' is a folder; name a file"),
        (["report", "{tmp}/sweep", "--out", "{tmp}/file/report.md"], "folder '{tmp}/file' is a file"),
        (["report", "{tmp}/sweep", "--out", "{tmp}/missing/report.md"], "folder '{tmp}/missing' does not exist"),
        (["report", "{tmp}/sweep", "--out", "/dev/full"], "is not a regular file"),
        (["report", "{tmp}/sweep", "--out", ""], "argument --out: empty value"),
        (["report", "{tmp}/tables/nan.jsonl"], "nan.jsonl line 4: top1 must be a finite number >= 0, got nan"),
        (["report", "{tmp}/tables/word.jsonl"], "word.jsonl line 4: top1 must be a finite number >= 0, got 'high'"),
        (["report", "{tmp}/tables/bool.jsonl"], "bool.jsonl line 4: top1 must be a finite number >= 0, got True"),
        (["report", "{tmp}/tables/percent.jsonl"], "top1 must be a finite number >= 0, got 87.5 (a fraction in [0, 1])"),
        (["report", "{tmp}/tables/setting.jsonl"], "setting.jsonl line 4: setting must be a mapping of name: value"),
        (["report", "{tmp}/tables/stage.jsonl"], "stage.jsonl line 4: stage 'finale' is neither tune nor final"),
        (["report", "{tmp}/tables/seed.jsonl"], "seed.jsonl line 4: seed must be a whole number >= 0, got 1.5"),
        (["report", "{tmp}/tables/task.jsonl"], "task.jsonl line 4: task must be text, got 7"),
        (["report", "{tmp}/tables/no-images.jsonl"], "no-images.jsonl line 4: n is 0, so top1 0.6 scores no image"),
        (["report", "{tmp}/tables/twice.jsonl"], "holds two rows of trial"),
        (["report", "{tmp}/tables/empty.jsonl"], "empty.jsonl holds no rows"),
        (["report", "{tmp}/tables/failed-tune-only.jsonl"], "holds no final-stage rows"),
        (["report", "{tmp}/tables/array.jsonl"], "array.jsonl line 1: expected a JSON object, got list"),
        (["report", "{tmp}/tables/binary.jsonl"], "binary.jsonl is not UTF-8 text"),
        (["report", "{tmp}/tables/nan.csv"], "nan.csv line 5: top1 must be a finite number >= 0, got 'nan'"),
        (["report", "{tmp}/tables/no-top1.csv"], "no-top1.csv has no column top1"),
        (["report", "{tmp}/tables/header.csv"], "header.csv holds no rows"),
        (["report", "{tmp}/tables/setting.csv"], "setting.csv line 5: setting must be a mapping of name: value, got "
                                                 "'lr=0.1' (not JSON)"),
        (["report", "{tmp}/tables/short.csv"], "short.csv line 5: has 5 cells where the header has 23 columns"),
        (["report", "{tmp}/sweep", "--groups", "{tmp}/groups-twice.yaml"], "puts task 'dtd' in 'a' and 'b'"),
        (["report", "{tmp}/sweep", "--groups", "{tmp}/notes"], "groups file {tmp}/notes is a folder"),
        (["report", "{tmp}/notes"], "holds no results.jsonl or results.csv"),
    ],
    "plot": [
        (["plot", "{tmp}/ablation", "--out", "{tmp}/ablation"], "is one of this command's inputs"),
        (["plot", "{tmp}/ablation", "--out", "{tmp}/ablation/results.jsonl"], "is a file, not a folder"),
        (["plot", "{tmp}/ablation", "--out", "{tmp}/file"], "--out '{tmp}/file' is a file, not a folder"),
        (["plot", "{tmp}/ablation", "--out", "{tmp}/file/figures"], "lies under '{tmp}/file', which is a file"),
        (["plot", "{tmp}/ablation", "--out", ""], "argument --out: empty value"),
        (["plot", "{tmp}/ablation", "{tmp}/ablation/results.jsonl", "--out", "{tmp}/figures"], "is given twice"),
        (["plot", "{tmp}/sweep", "--out", "{tmp}/figures"], "no ablation setting"),
        (["plot", "{tmp}/tables/nan.jsonl", "--out", "{tmp}/figures"], "top1 must be a finite number"),
        (["plot", "{tmp}/tables/setting.jsonl", "--out", "{tmp}/figures"], "setting must be a mapping"),
        (["plot", "{tmp}/tables/stage.jsonl", "--out", "{tmp}/figures"], "stage 'finale' is neither tune nor final"),
        (["plot", "{tmp}/tables/no-top1.csv", "--out", "{tmp}/figures"], "has no column top1"),
        (["plot", "{tmp}/tables/empty.jsonl", "--out", "{tmp}/figures"], "holds no rows"),
        (["plot", "{tmp}/sweep", "{tmp}/sweep-copy/results.csv", "--out", "{tmp}/figures"], "no ablation setting"),
        (["plot", "{tmp}/ablation", "--groups", "{tmp}/file", "--out", "{tmp}/figures"],
         "must map each group to a list of task names"),
    ],
    "tsne": [
        (["tsne", "{tmp}/seg-run", "--out", "{tmp}/t.png"], "is a segmentation run; a t-SNE"),
        (["tsne", "{tmp}/run", "--out", "{tmp}/t.txt"], "must end in .png, .svg, .pdf"),
        (["tsne", "{tmp}/run", "--out", "{tmp}/run"], "is a folder; name a file"),
        (["tsne", "{tmp}/run", "--out", "{tmp}/file/t.png"], "folder '{tmp}/file' is a file"),
        (["tsne", "{tmp}/run", "--out", "{tmp}/missing/t.png"], "folder '{tmp}/missing' does not exist"),
        (["tsne", "{tmp}/run", "--out", "/dev/full"], "is not a regular file"),
        (["tsne", "{tmp}/run", "--out", "{tmp}/t.png", "--max-images", "1"], "--max-images must be a whole number >= 2"),
        (["tsne", "{tmp}/run", "--out", "{tmp}/t.png", "--max-images", "-5"], "--max-images must be a whole number >= 2"),
        (["tsne", "{tmp}/run", "--out", "{tmp}/t.png", "--seed", "-1"], "--seed must be a whole number in [0, 2**32)"),
        (["tsne", "{tmp}/run", "{tmp}/run/", "--out", "{tmp}/t.png"], "is given twice"),
        (["tsne", "{tmp}/notes", "--out", "{tmp}/t.png"], "'{tmp}/notes' is not a vptune run folder"),
        (["tsne", "{tmp}/user-config", "--out", "{tmp}/t.png"], "'{tmp}/user-config' is not a vptune run folder"),
        (["tsne", "{tmp}/missing", "--out", "{tmp}/t.png"], "it does not exist"),
        (["tsne", "{tmp}/sweep", "--out", "{tmp}/t.png"], "is not a vptune run folder"),
    ],
    "sweep": [
        (sweep_with("--grid", "lr=0.01,,0.1"), "has an empty value between commas"),
        (sweep_with("--grid", "lr=0"), "--lr must be > 0, got 0.0"),
        (sweep_with("--lr", "0"), "--lr must be > 0, got 0.0"),
        (sweep_with("--grid", "lr=0.01,0.01"), "lr lists 0.01 twice"),
        (sweep_with("--grid", "lr=null"), "lr holds an empty value (null)"),
        (sweep_with("--grid", "lr=abc"), "lr must be a number, got 'abc'"),
        (sweep_with("--grid", "lr=-1"), "--lr must be > 0, got -1.0"),
        (sweep_with("--grid", "weight_decay=nan"), "--weight-decay must be a finite number"),
        (sweep_with("--method", "vpt-deep", "--grid", "vpt-deep:num_prompts=0,4"), "vpt-deep needs num_prompts >= 1, got 0"),
        (sweep_with("--method", "vpt-deep", "--vary", "vpt-deep:prompt_dropout=0.1,1.5"),
         "needs prompt_dropout in [0.0, 1.0), got 1.5"),
        (sweep_with("--vary", "train_fraction=0,0.5"), "--train-fraction must lie in (0, 1], got 0"),
        (sweep_with("--grid", "epochs=0"), "--epochs must be a whole number >= 1, got 0"),
        (sweep_with("--img-size", "30"), "img_size 30 is not a multiple of the patch size 16"),
        (sweep_with("--method", "vpt-deep", "--grid", "vpt-deep:deep_blocks=1-2,3-1"), "deep_blocks"),
        (sweep_with("--seeds", "0"), "--seeds must be a whole number in [1, 1000], got 0"),
        (sweep_with("--workers", "0"), "--workers must be a whole number in [1, 256], got 0"),
        (sweep_with("--launcher", "ray", "--cpus-per-trial", "nan"), "--cpus-per-trial must be a finite number > 0"),
        (sweep_with("--launcher", "ray", "--gpus-per-trial", "-1"), "--gpus-per-trial must be a finite number >= 0"),
        (sweep_with("--cpus-per-trial", "2"), "--cpus-per-trial apply to --launcher ray"),
        (sweep_with("--launcher", "ray", "--workers", "2"), "--workers applies to the local launcher"),
        (sweep_with("--method", "linear"), "methods are listed twice: linear"),
        (sweep_with("--method", "vpt-deep", "--grid", "vpt-deep:deep_blocks=[1,2]"), "cannot read grid value '[1'"),
        (sweep_with(out="{tmp}/notes"), "--out '{tmp}/notes' holds files but no vptune sweep"),
        (sweep_with(out="{tmp}/file"), "--out '{tmp}/file' is a file, not a folder"),
        (sweep_with(out="{tmp}/run"), "--out '{tmp}/run' holds files but no vptune sweep"),
        (sweep_with(out="{data}"), "is one of this command's inputs"),
        (sweep_with("--grid", "lr=0.5", out="{tmp}/finished"), "holds a sweep with other settings (methods[0].grid.lr "),
        (sweep_with("--grid", "lr=0.01,,0.5", out="{tmp}/finished"), "has an empty value between commas"),
        (sweep_with("--task", "nope"), "nope"),
        (sweep_with("--grid", "lr=0.01", "--grid", "lr=0.1"), "--grid lr=0.1: lr is given twice"),
        ([*SWEEP, "--config", "{tmp}/sweep-configs/out-list.yaml"], "out must be a string, got ['a']"),
        (sweep_with("--config", "{tmp}/sweep-configs/workers-half.yaml"), "workers must be a whole number, got 1.5"),
        (sweep_with("--config", "{tmp}/sweep-configs/grid-int-key.yaml"), "grid has key 5; keys are setting names"),
        (sweep_with("--config", "{tmp}/sweep-configs/options-int.yaml"),
         "method_options in settings must be a mapping of option: value, got 5"),
        (["sweep", *SWEEP_SETTINGS, "--config", "{tmp}/sweep-configs/method-int-key.yaml", "--out", "{tmp}/new-sweep"],
         "method 'linear' has key 3"),
    ],
    "predict": [
        (["predict", "{tmp}/seg.safetensors", "{tmp}/images/mine.png"], "mine_mask.png' exists; pass --overwrite"),
        (["predict", "{tmp}/seg.safetensors", "{tmp}/images/a.png", "{tmp}/images/a_mask.png", "--out-dir",
          "{tmp}/images", "--overwrite"], "would replace the input"),
        (["predict", "{tmp}/seg.safetensors", "{tmp}/images/a.png", "{tmp}/other/a.png", "--out-dir", "{tmp}/masks"],
         "would both write"),
        (["predict", "{tmp}/seg.safetensors", "{tmp}/images/a.png", "--out-dir", "{tmp}/file"], "is a file, not a folder"),
        (["predict", "{tmp}/seg.safetensors", "{tmp}/images/a.png", "--out-dir", "{tmp}/file/masks"],
         "which is a file"),
        (["predict", "{tmp}/seg.safetensors", "{tmp}/images/a.png", "--out-dir", ""], "argument --out-dir: empty value"),
        (["predict", "{tmp}/seg.safetensors", "{tmp}/images"], "image '{tmp}/images' is a folder"),
        (["predict", "{tmp}/seg.safetensors", "{tmp}/images/none.png"], "image '{tmp}/images/none.png' does not exist"),
        (["predict", "{tmp}/run", "{tmp}/images/a.png", "--out-dir", "{tmp}/masks"], "apply to segmentation models"),
        (["predict", "{tmp}/run", "{tmp}/images/a.png", "--top-k", "0"], "--top-k must be >= 1"),
        (["predict", "{tmp}/user-config", "{tmp}/images/a.png"], "is not a vptune run folder"),
    ],
    "data": [
        (["data", "prepare", "digits", "--out", ""], "argument --out: empty value"),
        (["data", "prepare", "digits", "--out", "{tmp}/file/data"], "lies under '{tmp}/file', which is a file"),
        (["data", "prepare", "digits", "--out", "{tmp}/prepared"], "already exists and is not empty"),
        (["data", "prepare", "digits", "--out", "{tmp}/task-file"], "digits is a file"),
        (["data", "prepare", "digits", "--out", "{tmp}/d", "--n-test", "0"], "n_test"),
        (["data", "prepare", "nope", "--out", "{tmp}/d"], "unknown offline task 'nope'"),
    ],
    "serve": [
        (serve_with("--max-wait-ms", "inf"), "--max-wait-ms must be a finite number in [0, 10000], got inf"),
        (serve_with("--max-wait-ms", "nan"), "--max-wait-ms must be a finite number in [0, 10000], got nan"),
        (serve_with("--max-wait-ms", "1e12"), "--max-wait-ms must be a finite number in [0, 10000]"),
        (serve_with("--max-body-mb", "0"), "--max-body-mb must be a finite number in [0.001, 1024], got 0.0"),
        (serve_with("--max-body-mb", "1e-300"), "--max-body-mb must be a finite number in [0.001, 1024], got 1e-300"),
        (serve_with("--max-body-mb", "inf"), "--max-body-mb must be a finite number in [0.001, 1024]"),
        (serve_with("--max-upload-mb", "nan"), "--max-upload-mb must be a finite number in [0.001, 16384]"),
        (serve_with("--watch-seconds", "0"), "--watch-seconds must be a finite number in [0.1, 86400], got 0.0"),
        (serve_with("--watch-seconds", "inf"), "--watch-seconds must be a finite number in [0.1, 86400]"),
        (serve_with("--max-pixels", "0"), "--max-pixels must be a whole number in [1, 1e+09], got 0"),
        (serve_with("--max-batch", "0"), "--max-batch must be a whole number in [1, 4096], got 0"),
        (serve_with("--max-queue", "-3"), "--max-queue must be a whole number in [1, 1e+06], got -3"),
        (serve_with("--port", "0"), "--port must be a whole number in [1, 65535], got 0"),
        (serve_with("--port", "70000"), "--port must be a whole number in [1, 65535], got 70000"),
        (serve_with("--port", "{busy_port}"), "cannot listen on 127.0.0.1:{busy_port}: the port is in use"),
        (serve_with("--host", "203.0.113.7"), "cannot listen on 203.0.113.7:8000"),
        (serve_with("--backbone", "vit_tiny_patch16_22"), "backbone 'vit_tiny_patch16_22' is not a timm model"),
        (serve_with("--backbone", "{tmp}/missing.pth"), "is not a timm model, an existing checkpoint file"),
        (serve_with("--device", "tpu"), "--device 'tpu' is not a device"),
        (serve_with("--device", "cuda:7"), "--device 'cuda:7'"),
        (serve_with("--admin-token", " "), "argument --admin-token: empty value"),
        (["serve", "--tasks", "{tmp}/file"], "--tasks '{tmp}/file' is a file"),
        (["serve", "--tasks", "{tmp}/missing"], "--tasks '{tmp}/missing' does not exist"),
        (["serve", "--tasks", "{tmp}/broken-tasks"], "no file of --tasks '{tmp}/broken-tasks' can be served"),
        (["serve", "--tasks", "{tmp}/seg-tasks"], "a segmentation task; the service serves classification"),
        (["serve", "--tasks", ""], "argument --tasks: empty value"),
        (serve_with("--backbone", "{tmp}/images/a.pth"), "cannot read checkpoint '{tmp}/images/a.pth': it is not a "
                                                          "file torch.save wrote"),
        (serve_with("--backbone", "{tmp}/notes.safetensors"), "it is not a safetensors file"),
    ],
}
ALL = [(command, argv, fragment) for command, cases in CASES.items() for argv, fragment in cases]


def _rows_with(edit) -> list[dict]:
    rows = [row.to_json() for row in paper_rows()]
    final = next(row for row in rows if row["stage"] == "final")
    edit(final, rows)
    return rows


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _edited_tables(folder: Path, sweep: Path) -> None:
    """Tables as users edit them: the sweep's, with one row or the header damaged."""
    folder.mkdir()
    edits = {
        "nan": lambda row, rows: row.update(top1=float("nan")),
        "word": lambda row, rows: row.update(top1="high"),
        "bool": lambda row, rows: row.update(top1=True),
        "percent": lambda row, rows: row.update(top1=87.5),
        "setting": lambda row, rows: row.update(setting=["lr", 0.1]),
        "stage": lambda row, rows: row.update(stage="finale"),
        "seed": lambda row, rows: row.update(seed=1.5),
        "task": lambda row, rows: row.update(task=7),
        "no-images": lambda row, rows: row.update(n=0),
        "twice": lambda row, rows: rows.append(dict(row)),
    }
    for name, edit in edits.items():
        _jsonl(folder / f"{name}.jsonl", _rows_with(edit))
    failed_final = {**next(row for row in _rows_with(lambda row, rows: None) if row["stage"] == "final"),
                    "top1": None, "error": "TrainingError: loss is nan"}
    _jsonl(folder / "failed-tune-only.jsonl", [*(row for row in _rows_with(lambda row, rows: None)
                                                 if row["stage"] == "tune"), failed_final])
    (folder / "empty.jsonl").write_text("")
    (folder / "array.jsonl").write_text("[1, 2]\n")
    (folder / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    rows = list(csv.reader(io.StringIO((sweep / "results.csv").read_text())))
    header, first_final = rows[0], 4  # three tune rows come first

    def write_csv(name: str, table: list[list[str]]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(table)
        (folder / name).write_text(buffer.getvalue())

    def with_cell(column: str, value: str) -> list[list[str]]:
        edited = [list(row) for row in rows[:first_final + 1]]
        edited[first_final][header.index(column)] = value
        return edited

    write_csv("header.csv", rows[:1])
    write_csv("no-top1.csv", [["score" if c == "top1" else c for c in header], *rows[1:]])
    write_csv("nan.csv", with_cell("top1", "nan"))
    write_csv("setting.csv", with_cell("setting", "lr=0.1"))
    write_csv("short.csv", [*rows[:first_final], rows[first_final][:5]])


def _fake_run(folder: Path, data: Path, head: str = "linear") -> None:
    """A run folder as `vptune train` leaves it, on the tiny CLI backbone (untrained tensors)."""
    folder.mkdir()
    mark_run_folder(folder)
    config = TrainConfig(data=str(data), task="digits", backbone="vit_tiny_patch16_224", pretrained=False,
                         img_size=32, method="linear", head=head, epochs=1, protocol="vtab")
    write_yaml(config.to_dict(), folder / "config.yaml")
    torch.manual_seed(config.seed)  # the backbone is rebuilt from the run's seed
    backbone, _ = vptune.backbones.build_backbone("vit_tiny_patch16_224", pretrained=False, img_size=32)
    vptune.save(vptune.create(backbone, "linear", 10, head=head, head_options={"channels": 8} if head != "linear"
                              else None, backbone_id="vit_tiny_patch16_224", img_size=32, pretrained=False),
                folder / "task.safetensors")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, small_digits_root):
    """Every input the cases need: sweep tables, runs, task files, images, folders of the wrong kind."""
    tmp = tmp_path_factory.mktemp("misuse-commands")
    (tmp / "file").write_text("not a folder\n")
    (tmp / "notes").mkdir()
    (tmp / "notes" / "todo.txt").write_text("mine\n")
    (tmp / "user-config").mkdir()
    (tmp / "user-config" / "config.yaml").write_text("lr: 0.1\nepochs: 3\n")
    sweep = write_results(paper_rows(), tmp / "sweep")
    write_results(ablation_rows("num_prompts", [1, 10]), tmp / "ablation")
    write_results(paper_rows(), tmp / "sweep-copy")
    (tmp / "groups.yaml").write_text("natural: [cifar100, dtd]\n")
    (tmp / "sweep-configs").mkdir()
    for name, text in {"out-list": "out: [a]\n", "workers-half": "workers: 1.5\n", "grid-int-key": "grid: {5: [1]}\n",
                       "options-int": "method_options: 5\n", "method-int-key": "methods: {linear: {3: 1}}\n"}.items():
        (tmp / "sweep-configs" / f"{name}.yaml").write_text(text)
    (tmp / "groups-twice.yaml").write_text("a: [dtd]\nb: [dtd]\n")
    _edited_tables(tmp / "tables", sweep)
    _fake_run(tmp / "run", small_digits_root)
    _fake_run(tmp / "seg-run", small_digits_root, head="setr-naive")
    finished = build_spec({"data": str(small_digits_root), "out": str(tmp / "finished"), "tasks": ["digits"],
                           "methods": ["linear"], "backbone": "vit_tiny_patch16_224", "pretrained": False,
                           "img_size": 32, "epochs": 1, "seeds": 1})
    (tmp / "finished").mkdir()
    record_sweep(finished)
    write_results(paper_rows(), tmp / "finished")
    (tmp / "tasks").mkdir()
    vptune.save(vptune.create(tiny_vit(), "linear", 3), tmp / "tasks" / "three.safetensors")
    (tmp / "broken-tasks").mkdir()
    (tmp / "broken-tasks" / "bad.safetensors").write_bytes(b"not a safetensors file")
    (tmp / "seg-tasks").mkdir()
    segmenter = (tmp / "seg-run" / "task.safetensors").read_bytes()
    (tmp / "seg-tasks" / "scenes.safetensors").write_bytes(segmenter)
    (tmp / "seg.safetensors").write_bytes(segmenter)
    for folder in ("images", "other"):
        (tmp / folder).mkdir()
        (tmp / folder / "a.png").write_bytes((small_digits_root / "digits" / "images" / "test" / "000000.png")
                                             .read_bytes())
    (tmp / "images" / "mine.png").write_bytes((tmp / "images" / "a.png").read_bytes())
    (tmp / "images" / "mine_mask.png").write_text("the user's own notes\n")
    (tmp / "images" / "a_mask.png").write_bytes((tmp / "images" / "a.png").read_bytes())
    (tmp / "images" / "a.pth").write_bytes((tmp / "images" / "a.png").read_bytes())  # an image named as weights
    (tmp / "notes.safetensors").write_text("my notes\n")
    (tmp / "prepared" / "digits").mkdir(parents=True)
    (tmp / "prepared" / "digits" / "train800.txt").write_text("mine\n")
    (tmp / "task-file").mkdir()
    (tmp / "task-file" / "digits").write_text("a file where the task folder would go\n")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    yield tmp, small_digits_root, busy.getsockname()[1]
    busy.close()


def fill(text: str, tmp: Path, data: Path, port: int) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{data}", str(data)).replace("{busy_port}", str(port))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"" for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("count", [(command, len(cases)) for command, cases in CASES.items()], ids=list(CASES))
def test_at_least_ten_cases_per_command(count):
    command, cases = count
    assert cases >= (6 if command == "data" else 10)


class Loading(Exception):
    """Raised where `vptune serve` would begin to load models: its misuse must be refused before."""


def forbid_loading(monkeypatch) -> None:
    def loading(*args, **kwargs):
        raise Loading("vptune serve began to load before refusing its settings")

    monkeypatch.setattr(vptune.serve.app, "create_app", loading)
    monkeypatch.setattr(timm, "create_model", loading)


@pytest.mark.parametrize("command, argv, fragment", ALL,
                         ids=[f"{c}:{' '.join(a[1:])[:60]}" for c, a, _ in ALL])
def test_misuse_is_one_line_and_writes_nothing(workspace, capsys, monkeypatch, command, argv, fragment):
    tmp, data, port = workspace
    if command == "serve":
        forbid_loading(monkeypatch)
    before, data_before = snapshot(tmp), sorted(data.glob("*/*"))
    try:
        code = main([fill(arg, tmp, data, port) for arg in argv])
    except SystemExit as exc:  # argparse usage errors exit 2
        code = exc.code
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.err, fill(fragment, tmp, data, port))
    assert captured.out == ""
    assert snapshot(tmp) == before  # nothing written, nothing overwritten, no half-made folder
    assert sorted(data.glob("*/*")) == data_before


# Each command's output on a disk that fills up while the file is written: the file it would
# have replaced keeps its content and no temporary file is left.
DISK_FULL = {
    "report": (["report", "{tmp}/sweep", "--out", "{tmp}/kept/report.md"], "report.md"),
    "plot": (["plot", "{tmp}/ablation", "--out", "{tmp}/kept"], "ablation-num_prompts.png"),
    "tsne": (["tsne", "{tmp}/run", "--out", "{tmp}/kept/tsne.png", "--max-images", "8", "--quiet"], "tsne.png"),
    "predict": (["predict", "{tmp}/seg-run", "{tmp}/images/a.png", "--out-dir", "{tmp}/kept", "--overwrite"],
                "a_mask.png"),
}


@pytest.mark.parametrize("command", sorted(DISK_FULL))
def test_a_full_disk_is_one_line_and_keeps_the_old_file(workspace, capsys, monkeypatch, command):
    tmp, data, port = workspace
    argv, name = DISK_FULL[command]
    kept = tmp / "kept"
    kept.mkdir(exist_ok=True)
    (kept / name).write_text("the previous file\n")
    before = snapshot(tmp)

    def disk_full(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vptune.files.os, "replace", disk_full)
    code = main([fill(arg, tmp, data, port) for arg in argv])
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.err, f"cannot write '{kept / name}': No space left on device")
    assert snapshot(tmp) == before
    shutil.rmtree(kept)
