"""`vptune push` and `hf://` task files against a Hub stand-in on 127.0.0.1: what comes back predicts as the
local file does."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from vptune.cli.main import main
from vptune.errors import VptuneError
from vptune.hub.card import VPT_BIBTEX, RunRecord, model_card
from vptune.hub.tasks import hub_uri, parse_hub_uri
from vptune.persistence import read_description

from cli_batch import run_batch
from hub_server import LocalHub
from serve_helpers import ARCH, make_task_file, random_backbone_file


@pytest.fixture(scope="module")
def session(tmp_path_factory, small_digits_root) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("push")
    backbone = random_backbone_file(tmp / "vit.safetensors", seed=0)
    task = make_task_file(backbone, tmp / "digits.safetensors", "vpt-deep", 3, seed=1, num_prompts=2)
    # A task file whose backbone file is later replaced by other weights.
    moved = random_backbone_file(tmp / "moved.safetensors", seed=0)
    orphan = make_task_file(moved, tmp / "orphan.safetensors", "linear", 3, seed=2)
    random_backbone_file(moved, seed=5)
    run_dir = tmp / "run"
    assert main(["train", "--data", str(small_digits_root), "--task", "digits", "--backbone", str(backbone),
                 "--arch", ARCH, "--img-size", "32", "--method", "linear", "--epochs", "1", "--batch-size", "64",
                 "--device", "cpu", "--out", str(run_dir), "--quiet"]) == 0
    images = []
    for i in range(3):
        images.append(tmp / f"image{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(images[-1])
    (tmp / "notes.safetensors").write_bytes(b"not a task file")
    predict = ["predict", "--top-k", "3", "--device", "cpu"]
    with LocalHub() as hub:
        calls = {
            "push_file": ["push", task, "me/digits"],
            "local": [*predict, task, *images],
            "hub_repo": [*predict, "hf://me/digits", *images],
            "hub_file": [*predict, "hf://models/me/digits/task.safetensors", *images],  # as push prints it
            "info": ["info", "hf://me/digits", "--json"],
            "push_run": ["push", run_dir, "me/run", "--path-in-repo", "digits-linear.safetensors"],
            "run_local": [*predict, run_dir / "task.safetensors", *images],
            "run_hub": [*predict, "hf://me/run@main/digits-linear.safetensors", *images],
            "second": ["push", task, "me/digits", "--path-in-repo", "copy.safetensors"],
            "ambiguous": [*predict, "hf://me/digits", *images],
            "push_orphan": ["push", orphan, "me/orphan"],
            "orphan_local": [*predict, orphan, *images],
            "orphan_hub": [*predict, "hf://me/orphan", *images],
            "no_repo": [*predict, "hf://me/nothing", *images],
            "no_file": [*predict, "hf://me/digits/other.safetensors", *images],
            "bad_name": [*predict, "hf://digits", *images],
            "not_task": ["push", tmp / "notes.safetensors", "me/notes"],
        }
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp / "hf-home"), "HF_TOKEN": "hf_local_test"}
        results = run_batch(list(calls.values()), env)
    return SimpleNamespace(hub=hub, task=task, run_dir=run_dir, **dict(zip(calls, results)))


def _one_error_line(result: dict, *fragments: str) -> None:
    lines = [line for line in result["err"].splitlines() if line.strip()]
    assert result["code"] == 1 and len(lines) == 1 and lines[0].startswith("vptune: error: "), result
    assert all(fragment in lines[0] for fragment in fragments), lines[0]


def _files(session: SimpleNamespace, repo: str, commit: int = -1) -> dict[str, bytes]:
    return session.hub.repos[("model", repo)].commits[commit][1]


def test_push_uploads_the_file_and_a_card(session):
    assert session.push_file["code"] == 0, session.push_file
    assert session.push_file["out"].splitlines()[1] == "hf://models/me/digits/task.safetensors"
    files = _files(session, "me/digits", commit=0)
    assert files["task.safetensors"] == session.task.read_bytes()
    card = files["README.md"].decode()
    description = read_description(session.task)
    for fact in ("library_name: vptune", "vpt-deep", description["backbone_fingerprint"], "protocol `vtab`",
                 "std [0.5, 0.5, 0.5]", VPT_BIBTEX, 'vptune.load("hf://models/me/digits/task.safetensors")'):
        assert fact in card
    # A second file pushed to the repository brings its own card.
    assert "hf://models/me/digits/copy.safetensors" in _files(session, "me/digits")["README.md"].decode()


def test_files_from_the_hub_predict_as_the_local_file(session):
    assert session.local["code"] == 0 and session.local["out"].count("\n") == 3
    assert session.hub_repo["out"] == session.local["out"]  # the repository's only task file
    assert session.hub_file["out"] == session.local["out"]
    assert session.run_hub["out"] == session.run_local["out"] and session.run_local["code"] == 0
    fingerprint = read_description(session.task)["backbone_fingerprint"]
    assert json.loads(session.info["out"])["backbone_fingerprint"] == fingerprint


def test_a_run_folder_pushes_its_metrics(session):
    card = _files(session, "me/run")["README.md"].decode()
    summary = json.loads((session.run_dir / "summary.json").read_text())
    assert f"| validation top1 ({summary['selected_by']}) | {summary['val_top1']:.4f} |" in card
    assert "Trained on task `digits`" in card and "digits-linear.safetensors" in card


def test_the_fingerprint_check_holds_for_hub_files(session):
    for result in (session.orphan_local, session.orphan_hub):
        _one_error_line(result, "was tuned on backbone", "load it onto the backbone it was made for")


def test_bad_hub_names_are_one_line(session):
    _one_error_line(session.ambiguous, "model me/digits holds 2 task files; name one: "
                                        "hf://models/me/digits/copy.safetensors")
    _one_error_line(session.no_repo, "model me/nothing does not exist or needs a login")
    _one_error_line(session.no_file, "model me/digits has no file 'other.safetensors'")
    _one_error_line(session.bad_name, "Invalid HF URI 'hf://digits'", "write hf://OWNER/NAME")
    _one_error_line(session.not_task, "is not a safetensors file")
    assert ("model", "me/notes") not in session.hub.repos


def test_hub_names_follow_huggingface_hubs_grammar():
    parsed = parse_hub_uri("hf://a/b@refs/pr/3/x/t.safetensors")
    assert (parsed.id, parsed.revision, parsed.path_in_repo) == ("a/b", "refs/pr/3", "x/t.safetensors")
    assert hub_uri("a/b", "v1", "t.safetensors") == "hf://models/a/b@v1/t.safetensors"
    assert parse_hub_uri(hub_uri("a/b")).id == "a/b"
    with pytest.raises(VptuneError, match="Repository id must be 'namespace/name'"):
        parse_hub_uri("hf://only-name")
    with pytest.raises(VptuneError, match="names a dataset; per-task files live in model repositories"):
        parse_hub_uri("hf://datasets/a/b/t.safetensors")


def test_card_without_a_run_or_a_recorded_pipeline():
    description = {"method": "linear", "backbone": "b", "arch": "a", "img_size": None, "pretrained": False,
                   "backbone_fingerprint": "f" * 24, "num_classes": 2, "class_names": ["x", "y"], "options": {}}
    card = model_card(description, "hf://o/n", RunRecord())
    assert "## Results" not in card and "prepares images as the VTAB protocol does" in card
    assert "random-init weights" in card and "classes | 2: x, y |" in card


def test_hub_errors_become_one_line_vptune_errors():
    import httpx2
    from huggingface_hub.errors import LocalEntryNotFoundError

    from vptune.hub.client import hub_errors

    with pytest.raises(VptuneError, match=r"cannot reach the Hub at .* for model o/n \(refused\)"):
        with hub_errors("o/n", "model", None):
            raise httpx2.ConnectError("refused")
    with pytest.raises(VptuneError, match="'f.safetensors' of dataset o/n@v1 is not in the cache yet"):
        with hub_errors("o/n", "dataset", "v1", "f.safetensors"):
            raise LocalEntryNotFoundError("offline")
    with pytest.raises(KeyError):  # anything else is a bug, not a Hub answer
        with hub_errors("o/n", "model", None):
            raise KeyError("x")
