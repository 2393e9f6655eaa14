"""Per-task files record their input pipeline; Predictor and `vptune predict` prepare images as eval did."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torchvision.transforms.v2 import functional as F

import vptune
from vptune.cli.main import main
from vptune.data import input_spec
from vptune.engine.distributed import Dist
from vptune.engine.evaluate import load_run_model, run_config
from vptune.engine.loaders import build_dataset, build_loader
from vptune.errors import DataError, VptuneError
from vptune.persistence import read_description
from vptune.tasks import Scoring, get_task_type

from conftest import DIGIT_NAMES, tiny_vit

ARCH = "vit_tiny_patch16_224"


def _fgvc_task(source: Path, task_dir: Path, counts: dict[str, int]) -> None:
    """Digits in FGVC layout (json {image: label}), as non-square 48x32 images."""
    (task_dir / "images").mkdir(parents=True)
    for split, n in counts.items():
        entries = {}
        for line in (source / f"{'train800' if split != 'test' else 'test'}.txt").read_text().splitlines()[:n]:
            rel, label = line.split()
            name = f"{split}-{Path(rel).name}"
            Image.open(source / rel).convert("RGB").resize((48, 32)).save(task_dir / "images" / name)
            entries[name] = int(label)
        (task_dir / f"{split}.json").write_text(json.dumps(entries))
    (task_dir / "classes.txt").write_text("\n".join(DIGIT_NAMES) + "\n")


@pytest.fixture(scope="module")
def fgvc_run(small_digits_root, tmp_path_factory) -> tuple[Path, Path]:
    """A 1-epoch vpt-deep run on a tiny FGVC-layout task; the backbone is a checkpoint file,
    so a bare per-task file rebuilds the same weights. Returns (data root, run folder)."""
    tmp = tmp_path_factory.mktemp("fgvc")
    torch.manual_seed(0)
    weights = tmp / "vit.pth"
    torch.save(timm.create_model(ARCH, pretrained=False, img_size=32, num_classes=0).state_dict(), weights)
    _fgvc_task(small_digits_root / "digits", tmp / "data" / "fgvcdigits", {"train": 48, "val": 16, "test": 12})
    args = ["train", "--data", tmp / "data", "--task", "fgvcdigits", "--backbone", weights, "--arch", ARCH,
            "--img-size", 32, "--method", "vpt-deep", "--num-prompts", 2, "--epochs", 1, "--batch-size", 16,
            "--device", "cpu", "--out", tmp / "run", "--quiet"]
    assert main([str(a) for a in args]) == 0
    return tmp / "data", tmp / "run"


def _eval_logits(data: Path, run_dir: Path) -> tuple[list[Path], torch.Tensor]:
    """The test images and the logits evaluation computes for them, through eval's own loader and prediction."""
    config = run_config(run_dir)
    model = load_run_model(run_dir, config)
    spec = input_spec(model.backbone, config.protocol)
    dataset = build_dataset(str(data), config.task, "test", spec, train=False, seed=config.seed, skip_bad_images=False)
    loader = build_loader(dataset, 5, Dist(), shuffle=False, seed=config.seed, epoch=0, num_workers=0)
    kind, scoring = get_task_type(model.task_type), Scoring(torch.device("cpu"), spec.img_size)
    with torch.no_grad():
        logits = torch.cat([kind.predict(model.eval(), model, images, labels, scoring) for images, labels in loader])
    return [path for path, _ in dataset.samples], logits


def test_task_file_records_the_runs_fgvc_pipeline(fgvc_run, capsys):
    _, run_dir = fgvc_run
    recorded = read_description(run_dir / "task.safetensors")["input"]
    assert main(["info", str(run_dir / "task.safetensors"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == recorded
    assert {k: recorded[k] for k in ("protocol", "img_size", "resize", "crop", "interpolation", "antialias")} == {
        "protocol": "fgvc", "img_size": 32, "resize": 36, "crop": 32, "interpolation": "bilinear", "antialias": True,
    }
    assert vptune.load(run_dir / "task.safetensors").input_spec.protocol == "fgvc"


def test_bare_file_predict_equals_eval(fgvc_run, capsys):
    data, run_dir = fgvc_run
    paths, logits = _eval_logits(data, run_dir)
    assert main(["predict", str(run_dir / "task.safetensors"), *map(str, paths), "--top-k", "3", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(paths)
    probs = logits.softmax(dim=1)
    for line, path, row in zip(lines, paths, probs):
        shown, ranked = line.split(": ")
        assert shown == str(path)
        pairs = [item.split() for item in ranked.split(", ")]
        best = row.topk(3)
        assert [name for name, _ in pairs] == [DIGIT_NAMES[i] for i in best.indices.tolist()]
        assert [float(p) for _, p in pairs] == pytest.approx(best.values.tolist(), abs=6e-4)


def test_squashing_the_image_would_change_the_logits(fgvc_run):
    # What `predict` did before files recorded their protocol; the test above tells them apart.
    data, run_dir = fgvc_run
    paths, logits = _eval_logits(data, run_dir)
    model = vptune.load(run_dir / "task.safetensors").eval()
    squashed = input_spec(model.backbone, "vtab").transform()
    with torch.no_grad():
        other = model(torch.stack([squashed(Image.open(p).convert("RGB")) for p in paths]))
    assert (other - logits).abs().max() > 1e-3


def test_every_image_form_prepares_the_same(fgvc_run):
    data, run_dir = fgvc_run
    predictor = vptune.Predictor(run_dir / "task.safetensors")
    path = sorted((data / "fgvcdigits" / "images").glob("test-*"))[0]
    image = Image.open(path).convert("RGB")
    prepared = predictor.prepare(path)
    assert prepared.shape == (3, 32, 32)
    forms = [str(path), path.read_bytes(), image, F.pil_to_tensor(image), prepared]
    for form in forms[1:]:
        assert torch.equal(predictor.prepare(form), prepared)
    logits = predictor.logits(forms)
    for row in logits[1:]:
        # Identical inputs; rows of one batch may still round differently in the kernels.
        torch.testing.assert_close(row, logits[0], atol=1e-5, rtol=0)
    [predictions] = predictor.predict([path], top_k=2)
    assert [p.label for p in predictions] == [DIGIT_NAMES[i] for i in logits[0].topk(2).indices.tolist()]
    assert predictions[0].score == pytest.approx(logits[0].softmax(0).max().item())


def test_created_model_prepares_like_vtab():
    backbone = tiny_vit()
    model = vptune.create(backbone, "linear", 3)
    assert model.input_spec == input_spec(backbone, "vtab")
    assert model.input_spec.to_dict()["antialias"] is False


def test_file_without_a_recorded_pipeline_loads_with_the_vtab_default(tmp_path):
    model = vptune.create(tiny_vit(), "linear", 3)
    model.set_input_spec(input_spec(model.backbone, "fgvc"))
    path = vptune.save(model, tmp_path / "task.safetensors")
    description = read_description(path)
    del description["input"]
    save_file(load_file(str(path)), str(path), metadata={"vptune": json.dumps(description)})
    restored = vptune.load(path, backbone=tiny_vit())
    assert restored.input_spec == input_spec(restored.backbone, "vtab")


def test_unknown_recorded_pipeline_is_refused(tmp_path):
    model = vptune.create(tiny_vit(), "linear", 3)
    path = vptune.save(model, tmp_path / "task.safetensors")
    description = read_description(path)
    description["input"]["crop"] = 20
    save_file(load_file(str(path)), str(path), metadata={"vptune": json.dumps(description)})
    with pytest.raises(DataError, match="upgrade vptune"):
        vptune.load(path, backbone=tiny_vit())


def test_bad_inputs_raise_vptune_errors():
    predictor = vptune.Predictor(vptune.create(tiny_vit(), "linear", 3))
    with pytest.raises(DataError, match="neither a uint8 image"):
        predictor.prepare(torch.zeros(3, 16, 16))
    with pytest.raises(DataError, match="cannot read an image"):
        predictor.prepare(3.5)
    with pytest.raises(DataError, match="cannot be decoded"):
        predictor.prepare(b"not an image")
    with pytest.raises(VptuneError, match="top_k"):
        predictor.predict([torch.zeros(3, 32, 32)], top_k=0)
    image = io.BytesIO()
    Image.new("L", (20, 40)).save(image, format="PNG")
    assert predictor.prepare(image.getvalue()).shape == (3, 32, 32)
