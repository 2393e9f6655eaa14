"""Tiny per-task files on one shared random backbone, a real server for them, and reference answers."""

from __future__ import annotations

import io
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

import vptune
from vptune.data import build_transform
from vptune.data.transforms import input_spec

ARCH = "vit_tiny_patch16_224"
# name -> (method, classes, options); two VPT-Deep with different prompt lengths and one Linear
TASKS = {
    "deep5": ("vpt-deep", 10, {"num_prompts": 5}),
    "deep2": ("vpt-deep", 7, {"num_prompts": 2}),
    "lin": ("linear", 6, {}),
}


def random_backbone_file(path: Path, seed: int) -> Path:
    """A random vit_tiny at 32 px saved as a checkpoint, so every task built on it shares its weights."""
    torch.manual_seed(seed)
    model = timm.create_model(ARCH, pretrained=False, img_size=32, num_classes=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def make_task_file(backbone: Path, path: Path, method: str, classes: int, seed: int, **options) -> Path:
    torch.manual_seed(seed)
    model = vptune.create(
        str(backbone), method, classes, arch=ARCH, img_size=32,
        class_names=[f"{path.stem}-class{i}" for i in range(classes)], **options,
    )
    with torch.no_grad():  # a head far from zero, so every task ranks classes its own way
        model.head.weight.normal_(0, 0.2)
        model.head.bias.normal_(0, 1)
        if getattr(model, "prompt", None) is not None:
            model.prompt.embeddings.normal_(0, 1)
    return vptune.save(model, path)


@dataclass
class TaskFiles:
    folder: Path  # the three tasks
    spare: Path  # another VPT-Deep task on the same backbone, not served at start
    other_backbone: Path  # a task file made on different backbone weights


def build_task_files(root: Path) -> TaskFiles:
    backbone = random_backbone_file(root / "backbone.safetensors", seed=0)
    folder = root / "source"
    for seed, (name, (method, classes, options)) in enumerate(TASKS.items()):
        make_task_file(backbone, folder / f"{name}.safetensors", method, classes, seed + 1, **options)
    spare = make_task_file(backbone, root / "spare" / "spare.safetensors", "vpt-deep", 4, 11, num_prompts=3)
    other = random_backbone_file(root / "other-backbone.safetensors", seed=1)
    alien = make_task_file(other, root / "alien" / "alien.safetensors", "linear", 3, 12)
    return TaskFiles(folder, spare, alien)


def png(seed: int, size: tuple[int, int] = (40, 48)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class Reference:
    """Each task's own model (`vptune.load(file)`) with the evaluation transform: the expected answers."""

    def __init__(self) -> None:
        self._models: dict[Path, tuple[torch.nn.Module, object]] = {}

    def scores(self, file: Path, image: bytes) -> torch.Tensor:
        if file not in self._models:
            model = vptune.load(file).eval()
            spec = input_spec(model.backbone, "vtab")
            self._models[file] = (model, build_transform("vtab", spec.img_size, spec.mean, spec.std, train=False))
        model, transform = self._models[file]
        with torch.no_grad():
            rgb = Image.open(io.BytesIO(image)).convert("RGB")
            return model(transform(rgb).unsqueeze(0)).softmax(dim=1)[0]

    def check(self, file: Path, image: bytes, answer: dict, top_k: int = 5) -> None:
        """`answer` (a PredictResponse body) ranks like the task's own model, with the same scores."""
        model, _ = self._models.get(file) or (vptune.load(file), None)
        scores = self.scores(file, image)
        top = scores.topk(min(top_k, len(scores)))
        predictions = answer["predictions"]
        assert [p["index"] for p in predictions] == top.indices.tolist()
        assert [p["label"] for p in predictions] == [model.class_names[i] for i in top.indices.tolist()]
        np.testing.assert_allclose([p["score"] for p in predictions], top.values.tolist(), atol=1e-4)


class ServerThread:
    """uvicorn serving `app` on a free loopback port, in a thread, until `stop`."""

    def __init__(self, app) -> None:
        import uvicorn

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def start(self, ready_timeout: float = 120) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail("the server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


def copy_tasks(files: TaskFiles, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in files.folder.glob("*.safetensors"):
        shutil.copy(path, folder / path.name)
    return folder


def wait_for(condition, timeout: float = 60.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {message}")



def many_task_files(backbone: Path, folder: Path, count: int, *, classes: int = 5, num_prompts: int = 2) -> list[Path]:
    """`count` VPT-Deep task files `t0000...` on `backbone`, each with its own random prompts and head."""
    torch.manual_seed(100)
    model = vptune.create(str(backbone), "vpt-deep", classes, arch=ARCH, img_size=32, num_prompts=num_prompts,
                          class_names=[f"class{i}" for i in range(classes)])
    paths = []
    with torch.no_grad():
        for index in range(count):
            model.head.weight.normal_(0, 0.2)
            model.head.bias.normal_(0, 1)
            model.prompt.embeddings.normal_(0, 1)
            paths.append(vptune.save(model, folder / f"t{index:04d}.safetensors"))
    return paths



def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 when absent)."""
    text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0
