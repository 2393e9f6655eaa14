"""Serving past one process's memory and past one process: the `--tier` and `--replicas` runs of serving.py.

--tier: N tiny-backbone VPT-Deep task files served with a tier of T (`--max-loaded-tasks`), 8
client threads asking for tasks of Zipf popularity (s=1.1) over HTTP: hit rate (1 - loads /
requests), requests/s, p50/p99 latency of all requests (misses included), the resident memory
of the server process (once ready, halfway through the load, at its end, and the peak of
samples every 0.5 s), and a sample of answers checked against each task's own model. The
baseline is the same stream over the first B tasks with every one of them loaded at start
(no tier): loading all N at start would take N loads before the first answer.

--replicas: `vptune serve --ray --replicas R` for R = 1 and 2 on this machine, 8 client threads
sending mixed requests with the routing header: requests/s of each, their ratio, and every
answer checked against its task's own model (none lost, none mixed).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import vptune

ARCH, IMG_SIZE = "vit_tiny_patch16_224", 32
SRC = Path(__file__).resolve().parents[1] / "src"


def tiny_tasks(root: Path, count: int, num_prompts: int = 5, classes: int = 10) -> list[Path]:
    """`count` VPT-Deep task files on a random vit_tiny at 32 px: one saved with vptune, the others
    its description with freshly drawn prompts and head (so writing 10,000 takes seconds)."""
    torch.manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)
    backbone = root / "backbone.safetensors"
    model = timm.create_model(ARCH, pretrained=False, img_size=IMG_SIZE, num_classes=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(backbone))
    folder = root / "tasks"
    template = vptune.save(vptune.create(str(backbone), "vpt-deep", classes, arch=ARCH, img_size=IMG_SIZE,
                                         num_prompts=num_prompts), folder / "t00000.safetensors")
    with safe_open(str(template), "pt") as opened:
        metadata, shapes = opened.metadata(), {key: opened.get_tensor(key).shape for key in opened.keys()}
    paths = [template]
    generator = torch.Generator().manual_seed(1)
    for index in range(1, count):
        tensors = {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
        path = folder / f"t{index:05d}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def png(seed: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (IMG_SIZE, IMG_SIZE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def own_top1(paths: list[Path], image: bytes) -> dict[str, int]:
    """Each task's own model's top class for `image` (its file loaded alone onto the backbone)."""
    import io

    from PIL import Image

    from vptune.data import build_transform
    from vptune.data.transforms import input_spec

    first = vptune.load(paths[0])
    spec = input_spec(first.backbone, "vtab")
    batch = build_transform("vtab", spec.img_size, spec.mean, spec.std, train=False)(
        Image.open(io.BytesIO(image)).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        return {p.stem: int(vptune.load(p, first.backbone, backbone_fingerprint=first.backbone_fingerprint)
                            .eval()(batch).argmax()) for p in paths}


def load_stream(url: str, names: list[str], seconds: float, image: bytes, *, zipf: float | None, clients: int = 8,
                header: bool = False) -> dict:
    """Requests from `clients` threads for `seconds`: tasks uniform or Zipf(`zipf`) over `names`.
    Returns requests/s, latencies and the (task, top class, status) of every answer."""
    import httpx

    weights = np.ones(len(names)) if zipf is None else 1.0 / np.arange(1, len(names) + 1) ** zipf
    weights /= weights.sum()
    latencies: list[float] = []
    answers: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.monotonic() < deadline:
                task = names[rng.choice(len(names), p=weights)]
                headers = {"serve_multiplexed_model_id": task} if header else {}
                start = time.perf_counter()
                try:
                    response = http.post(f"/v1/tasks/{task}/predict?top_k=1", content=image, headers=headers)
                except httpx.TransportError:
                    answers.append((task, -1, 0))
                    continue
                latencies.append(time.perf_counter() - start)
                top = response.json()["predictions"][0]["index"] if response.status_code == 200 else -1
                answers.append((task, top, response.status_code))

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(latencies)
    return {"requests_s": len(latencies) / (time.perf_counter() - started), "answers": answers,
            "p50_ms": 1000 * ordered[len(ordered) // 2], "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))]}


def metric(url: str, name: str) -> float:
    import httpx

    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


def serve(folder: Path, port: int, *flags: str) -> subprocess.Popen:
    """`vptune serve` on `folder` in a subprocess, once it answers /readyz (or, with --ray, prints `serving on`)."""
    import httpx

    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "vptune", "serve", "--tasks", str(folder), "--port", str(port),
                                "--log-level", "warning", *flags], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"vptune serve {' '.join(flags)} did not become ready")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` and its children (Ray's replicas), in MiB."""
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


class RssSampler:
    """Samples `rss_mb(pid)` every `interval` seconds while the `with` block runs."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._done.wait(self.interval):
            self.samples.append((time.monotonic() - start, rss_mb(self.pid)))

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max(mb for _, mb in self.samples)

    def at(self, seconds: float) -> float:
        """The first sample taken at or after `seconds` into the block."""
        return next(mb for t, mb in self.samples if t >= seconds)


def checked(answers: list[tuple[str, int, int]], expected: dict[str, int]) -> dict:
    """Answers that were lost (no 200) and answers that are not their task's own (mixed)."""
    lost = sum(1 for _, _, status in answers if status != 200)
    wrong = sum(1 for task, top, status in answers if status == 200 and task in expected and top != expected[task])
    checked_count = sum(1 for task, _, status in answers if status == 200 and task in expected)
    return {"requests": len(answers), "lost": lost, "wrong": wrong, "checked": checked_count}


def tier_run(root: Path, count: int, tier: int, baseline: int, seconds: float) -> list[dict]:
    paths = tiny_tasks(root, count)
    names = [p.stem for p in paths]
    image = png(0)
    rng = np.random.default_rng(7)
    sample = [paths[i] for i in sorted(set(rng.zipf(1.1, 400).clip(1, count) - 1))[:150]]
    expected = own_top1(sample, image)
    rows = []
    base_folder = root / "baseline"
    base_folder.mkdir()
    for path in paths[:baseline]:
        os.link(path, base_folder / path.name)
    for label, folder, flags, served in (
        (f"tier {tier} of {count}", root / "tasks", ("--max-loaded-tasks", str(tier)), names),
        (f"all {baseline} loaded", base_folder, (), names[:baseline]),
    ):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        process = serve(folder, port, *flags)
        ready_s = time.perf_counter() - started
        rss_ready = rss_mb(process.pid)
        with RssSampler(process.pid) as rss:
            result = load_stream(url, served, seconds, image, zipf=1.1)
        loads = metric(url, "vptune_task_loads_total")
        row = {"setting": label, "ready_s": ready_s, "requests_s": result["requests_s"], "p50_ms": result["p50_ms"],
               "p99_ms": result["p99_ms"], "loaded": metric(url, "vptune_tasks_loaded"),
               "evictions": metric(url, "vptune_task_evictions_total"),
               "task_mb": metric(url, "vptune_task_memory_bytes") / 2**20, "rss_ready_mb": rss_ready,
               "rss_half_mb": rss.at(seconds / 2), "rss_end_mb": rss_mb(process.pid), "rss_peak_mb": rss.peak,
               "hit_rate": 1 - loads / max(1, len(result["answers"])) if flags else 1.0,
               **checked(result["answers"], expected)}
        stop(process)
        rows.append(row)
    return rows


def replicas_run(root: Path, count: int, seconds: float) -> list[dict]:
    paths = tiny_tasks(root, count)
    image = png(0)
    expected = own_top1(paths, image)
    rows = []
    for replicas in (1, 2):
        port = free_port()
        process = serve(root / "tasks", port, "--ray", "--replicas", str(replicas))
        result = load_stream(f"http://127.0.0.1:{port}", [p.stem for p in paths], seconds, image, zipf=None,
                             header=True)
        rows.append({"setting": f"{replicas} replica(s)", "requests_s": result["requests_s"],
                     "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], **checked(result["answers"], expected)})
        stop(process)
    rows[1]["ratio"] = rows[1]["requests_s"] / rows[0]["requests_s"]
    return rows


def number(value: float) -> str:
    """Three significant digits below 100, whole numbers above."""
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def print_rows(rows: list[dict]) -> None:
    keys = list(dict.fromkeys(key for row in rows for key in row))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        cells = [number(row[k]) if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys]
        print("| " + " | ".join(cells) + " |")
