"""Time of one MultiTask batch mixing tasks against each task's own model on its samples.

Both sides compute the same logits; the baseline runs one forward per task (the
straightforward way to serve several per-task files), MultiTask one shared forward.

    python benchmarks/multitask.py                 # vit_small_patch16_224 at 224 px, 32 images, 8 tasks
    python benchmarks/multitask.py --quick         # vit_tiny at 64 px, to check it runs
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import timm
import torch

import vptune

# (method, options) of the tasks, samples spread over them in turn.
TASKS = (
    ("vpt-deep", {"num_prompts": 50}),
    ("vpt-deep", {"num_prompts": 10}),
    ("vpt-deep", {"num_prompts": 5, "deep_blocks": (1, 6)}),
    ("vpt-shallow", {"num_prompts": 20}),
    ("linear", {}),
    ("mlp-3", {}),
    ("vpt-deep", {"num_prompts": 1}),
    ("vpt-deep", {"num_prompts": 100}),
)


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    arch, size = ("vit_tiny_patch16_224", 64) if args.quick else ("vit_small_patch16_224", 224)
    torch.manual_seed(0)
    backbone = timm.create_model(arch, pretrained=False, img_size=size, num_classes=0).eval()
    serving = vptune.MultiTask(backbone)
    own = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (method, options) in enumerate(TASKS):
            path = vptune.save(vptune.create(backbone, method, 10, **options), Path(tmp) / f"t{i}.safetensors")
            serving.add(f"t{i}", path)
            own[f"t{i}"] = vptune.load(path, backbone=backbone).eval()
    names = [f"t{i % len(TASKS)}" for i in range(args.batch)]
    images = torch.randn(args.batch, 3, size, size)

    @torch.no_grad()
    def per_task() -> None:
        for name in own:
            rows = [i for i, n in enumerate(names) if n == name]
            own[name](images[rows])

    baseline = median_s(per_task, args.repeats)
    shared = median_s(lambda: serving.logits(images, names), args.repeats)
    print(f"# {arch} at {size} px, batch {args.batch}, {len(TASKS)} tasks, CPU {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print(f"per-task forwards {baseline * 1e3:.0f} ms, MultiTask {shared * 1e3:.0f} ms: {baseline / shared:.2f}x")


if __name__ == "__main__":
    main()
