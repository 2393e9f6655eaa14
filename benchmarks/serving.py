"""Multi-task serving throughput, latency and memory, against baselines measured in the same run.

For 1, 10, 100 and 1,000 tasks on one backbone (all VPT-Deep; a mix of VPT-Deep with two
prompt lengths and Linear; and half VPT-Deep, half Bias, whose tasks run as sub-batches),
batches are drawn from a request stream whose task popularity is uniform, Zipf (s=1.1) or
all one task, and run three ways on the same prepared images:

- mixed: one `MultiTask.logits` call for the whole batch, whatever its tasks (what `vptune
  serve` does);
- one-task: the same images, each at the speed of a batch all of one task of its own kind
  (VPT-Deep of either prompt length, or Linear): for each kind in the batch, a batch all of its
  first task is timed and weighted by the kind's share of the batch (the best case of batching);
- per-task: each task as its own model (the task's `vptune.load(file)` model on the shared
  backbone, `MultiTask.model(name)`), one forward per task present in the batch.

It prints images/s and the p50/p99 latency of a batch for each, and the resident memory
(RSS) that adding the tasks cost against the sum of their per-task file sizes. Every task
count runs in a fresh subprocess so that its memory reading is its own.

With `--http SECONDS` it also serves the same task files with `vptune serve`'s app on a
loopback port and sends PNG images from 8 client threads (uniform popularity) for that
long: requests/s and p50/p99 request latency, end to end.

    python benchmarks/serving.py --quick     # small backbone, a few minutes on 2 cores
    python benchmarks/serving.py             # ViT-B/16 at 224 px, 50 prompts
    python benchmarks/serving.py --tier      # 10,000 task files, a tier of 500 (serving_scale.py)
    python benchmarks/serving.py --replicas  # 1 vs 2 Ray Serve replicas (serving_scale.py)
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file

import vptune
from vptune.serve import MultiTask

POPULARITY = ("uniform", "zipf", "one-task")
MIXES = ("vpt-deep", "mix", "bias-mix")


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so RSS counts live memory only."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def task_recipes(mix: str, num_prompts: int) -> list[tuple[str, dict]]:
    """The methods tasks cycle through: all VPT-Deep; VPT-Deep of two prompt lengths and Linear;
    or VPT-Deep and Bias (whose tasks change backbone tensors, so each runs as its own sub-batch)."""
    deep = ("vpt-deep", {"num_prompts": num_prompts})
    if mix == "vpt-deep":
        return [deep]
    if mix == "bias-mix":
        return [deep, ("bias", {})]
    return [deep, ("vpt-deep", {"num_prompts": max(1, num_prompts // 10)}), ("linear", {})]


def write_tasks(backbone: torch.nn.Module, folder: Path, count: int, mix: str, num_prompts: int,
                classes: int, img_size: int, backbone_id: str) -> list[Path]:
    """`count` per-task files on `backbone`: one model per recipe, its tuned tensors re-drawn for each task."""
    # A Bias template gets its own copy of the backbone: its tuned tensors are backbone tensors.
    templates = [
        vptune.create(backbone if method != "bias" else copy.deepcopy(backbone), method, classes, pretrained=False,
                      img_size=img_size, backbone_id=backbone_id, **options)
        for method, options in task_recipes(mix, num_prompts)
    ]
    paths = []
    for i in range(count):
        model = templates[i % len(templates)]
        with torch.no_grad():
            for tensor in model.tuned_state_dict().values():
                tensor.normal_(0, 0.02)
        paths.append(vptune.save(model, folder / f"task{i:04d}.safetensors"))
    return paths


def sample_batches(names: list[str], popularity: str, batch: int, count: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    if popularity == "one-task":
        return [[names[0]] * batch for _ in range(count)]
    weights = np.ones(len(names)) if popularity == "uniform" else 1.0 / np.arange(1, len(names) + 1) ** 1.1
    weights /= weights.sum()
    return [list(rng.choice(names, size=batch, p=weights)) for _ in range(count)]


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def summary(seconds: list[float], batch: int) -> dict:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"img_s": batch / statistics.mean(seconds), "p50_ms": 1000 * statistics.median(seconds),
            "p99_ms": 1000 * p99}


def http_load(folder: Path, names: list[str], img_size: int, seconds: float, clients: int = 8) -> dict:
    """Requests/s and request latency of the HTTP service on `folder`, `clients` threads, uniform tasks."""
    import httpx
    import uvicorn
    from PIL import Image

    from vptune.serve.app import create_app
    from vptune.serve.config import ServeConfig

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(ServeConfig(tasks_dir=folder)), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    ready_by = time.monotonic() + 300
    while time.monotonic() < ready_by:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    else:
        raise RuntimeError(f"the server did not become ready: {httpx.get(f'{url}/readyz').text}")
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (img_size, img_size, 3), dtype=np.uint8)).save(
        buffer, format="PNG")
    image = buffer.getvalue()
    latencies: list[float] = []
    failures = [0]
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                response = http.post(f"/v1/tasks/{names[rng.integers(len(names))]}/predict?top_k=1", content=image)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    failures[0] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()
    return {"requests_s": len(latencies) / seconds, **summary(latencies, 1), "failed": failures[0]}


def one_setting(args: argparse.Namespace, count: int, mix: str) -> list[dict]:
    """Every popularity for `count` tasks of `mix`; runs in its own process."""
    torch.manual_seed(0)
    backbone = timm.create_model(args.arch, pretrained=False, img_size=args.img_size, num_classes=0).eval()
    images = torch.randn(args.batch, 3, args.img_size, args.img_size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # The HTTP service rebuilds the backbone from what the files record: a checkpoint of these weights.
        backbone_id = "random"
        if args.http:
            backbone_id = str(Path(tmp) / "backbone.safetensors")
            save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, backbone_id)
        paths = write_tasks(backbone, Path(tmp), count, mix, args.num_prompts, args.classes, args.img_size,
                            backbone_id)
        file_bytes = sum(path.stat().st_size for path in paths)
        release_freed_memory()
        before = rss_bytes()
        multitask = MultiTask(backbone)
        for path in paths:
            multitask.add(path.stem, path)
        release_freed_memory()
        growth = rss_bytes() - before
        names = [path.stem for path in paths]
        kinds = len(task_recipes(mix, args.num_prompts))
        kind_of = {name: i % kinds for i, name in enumerate(names)}  # write_tasks cycles through the recipes

        def one_task(batch_names: list[str]) -> float:
            """Seconds of the batch if each image ran at its kind's one-task batch speed."""
            first = {}
            for name in batch_names:
                first.setdefault(kind_of[name], name)
            share = Counter(kind_of[name] for name in batch_names)
            return sum(share[kind] / args.batch * timed(lambda: multitask.logits(images, [name] * args.batch))
                       for kind, name in first.items())

        for popularity in POPULARITY:
            batches = sample_batches(names, popularity, args.batch, args.warmup + args.repeats, seed=count)
            times = {"mixed": [], "one-task": [], "per-task": []}
            with torch.no_grad():
                for i, batch_names in enumerate(batches):
                    runs = {
                        "mixed": lambda: timed(lambda: multitask.logits(images, batch_names)),
                        "one-task": lambda: one_task(batch_names),
                        "per-task": lambda: timed(lambda: [
                            multitask.model(n)(images[[j for j, m in enumerate(batch_names) if m == n]])
                            for n in dict.fromkeys(batch_names)]),
                    }
                    for way, run in runs.items():  # interleaved, so machine load falls on all alike
                        seconds = run()
                        if i >= args.warmup:
                            times[way].append(seconds)
            rows.append({
                "tasks": count, "mix": mix, "popularity": popularity,
                "distinct_per_batch": statistics.mean(len(set(b)) for b in batches),
                **{way: summary(t, args.batch) for way, t in times.items()},
                "rss_growth": growth, "file_bytes": file_bytes,
            })
        if args.http:
            rows[0]["http"] = http_load(Path(tmp), names, args.img_size, args.http)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'tasks':>5} {'mix':<8} {'popularity':<9} {'tasks/b':>7} | {'mixed img/s':>11} {'p50 ms':>7} "
          f"{'p99 ms':>7} | {'one-task':>8} {'per-task':>8} | {'mixed/one':>9} {'mixed/per':>9}")
    for r in rows:
        m, o, p = r["mixed"], r["one-task"], r["per-task"]
        print(f"{r['tasks']:>5} {r['mix']:<8} {r['popularity']:<9} {r['distinct_per_batch']:>7.1f} | "
              f"{m['img_s']:>11.1f} {m['p50_ms']:>7.1f} {m['p99_ms']:>7.1f} | {o['img_s']:>8.1f} {p['img_s']:>8.1f} | "
              f"{m['img_s'] / o['img_s']:>9.2f} {m['img_s'] / p['img_s']:>9.2f}")
    print("\nmemory: resident set growth from adding the tasks, against the sum of their file sizes")
    seen = set()
    for r in rows:
        if (r["tasks"], r["mix"]) not in seen:
            seen.add((r["tasks"], r["mix"]))
            print(f"{r['tasks']:>5} {r['mix']:<8} RSS +{r['rss_growth'] / 2**20:8.1f} MiB   files {r['file_bytes'] / 2**20:8.1f} MiB"
                  f"   ratio {r['rss_growth'] / max(1, r['file_bytes']):.2f}")
    http = [r for r in rows if "http" in r]
    if http:
        print("\nHTTP: 8 clients on loopback, uniform popularity, one PNG per request")
        for r in http:
            h = r["http"]
            print(f"{r['tasks']:>5} {r['mix']:<8} {h['requests_s']:8.1f} requests/s   p50 {h['p50_ms']:7.1f} ms"
                  f"   p99 {h['p99_ms']:7.1f} ms   failed {h['failed']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small backbone, fewer repeats (a few minutes on 2 cores)")
    parser.add_argument("--tasks", default="1,10,100,1000", help="task counts, comma-separated")
    parser.add_argument("--mixes", default=",".join(MIXES), help=f"task mixes, comma-separated ({', '.join(MIXES)})")
    parser.add_argument("--arch", default=None, help="timm architecture (vit_base_patch16_224; quick: vit_tiny_patch16_224)")
    parser.add_argument("--img-size", type=int, default=None, help="image size (224; quick: 64)")
    parser.add_argument("--num-prompts", type=int, default=None, help="VPT-Deep prompts (50; quick: 10)")
    parser.add_argument("--batch", type=int, default=None, help="images per batch (32; quick: 16)")
    parser.add_argument("--repeats", type=int, default=None, help="timed batches per setting (30; quick: 8)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches before each setting (2)")
    parser.add_argument("--classes", type=int, default=100, help="classes of every task's head (100)")
    parser.add_argument("--http", type=float, default=0, metavar="SECONDS",
                        help="also load the HTTP service for this long per setting (8 clients, uniform)")
    parser.add_argument("--tier", action="store_true",
                        help="instead: the tier run (see serving_scale.py): --tier-tasks files, a tier of --tier-size")
    parser.add_argument("--tier-tasks", type=int, default=10_000, help="task files of the tier run (10000)")
    parser.add_argument("--tier-size", type=int, default=500, help="--max-loaded-tasks of the tier run (500)")
    parser.add_argument("--baseline-tasks", type=int, default=1000, help="tasks of the all-loaded baseline (1000)")
    parser.add_argument("--replicas", action="store_true",
                        help="instead: 1 vs 2 Ray Serve replicas (see serving_scale.py) on --replica-tasks tasks")
    parser.add_argument("--replica-tasks", type=int, default=20, help="task files of the replicas run (20)")
    parser.add_argument("--seconds", type=float, default=30, help="load per setting of --tier and --replicas (30)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # COUNT:MIX, in a subprocess
    args = parser.parse_args()
    if args.tier or args.replicas:
        import serving_scale

        with tempfile.TemporaryDirectory() as root:
            if args.tier:
                serving_scale.print_rows(serving_scale.tier_run(
                    Path(root) / "tier", args.tier_tasks, args.tier_size, args.baseline_tasks, args.seconds))
            if args.replicas:
                serving_scale.print_rows(serving_scale.replicas_run(Path(root) / "replicas", args.replica_tasks,
                                                                    args.seconds))
        return
    quick = {"arch": "vit_tiny_patch16_224", "img_size": 64, "num_prompts": 10, "batch": 16, "repeats": 8}
    full = {"arch": "vit_base_patch16_224", "img_size": 224, "num_prompts": 50, "batch": 32, "repeats": 30}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.one is not None:
        count, mix = args.one.split(":")
        print(json.dumps(one_setting(args, int(count), mix)))
        return
    print(f"backbone {args.arch} @{args.img_size}px, VPT-Deep {args.num_prompts} prompts, batch {args.batch}, "
          f"{args.repeats} timed batches, torch threads {torch.get_num_threads()}")
    rows = []
    unknown = sorted(set(args.mixes.split(",")) - set(MIXES))
    if unknown:
        parser.error(f"unknown mix {', '.join(unknown)}; choose from {', '.join(MIXES)}")
    for count, mix in [(int(n), mix) for n in args.tasks.split(",") for mix in args.mixes.split(",")]:
        command = [sys.executable, __file__, "--one", f"{count}:{mix}"] + [
            f"--{key.replace('_', '-')}={getattr(args, key)}"
            for key in ("arch", "img_size", "num_prompts", "batch", "repeats", "warmup", "classes", "http")
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.extend(json.loads(output.strip().splitlines()[-1]))
        print(f"... {count} tasks, {mix}: done", file=sys.stderr)
    print_table(rows)


if __name__ == "__main__":
    main()
