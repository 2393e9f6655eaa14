"""Train-step time and peak memory of vptune's methods, against references measured in the same run.

For each model and batch size it times a train step (forward, backward, SGD step; median
after warm-up) of linear, VPT-Shallow, VPT-Deep, full fine-tuning and a straightforward
prompt loop (the authors' approach: prompts concatenated, every block run whole, prompt
outputs sliced off), plus VPT-Deep under bf16 autocast, with activation checkpointing and
under torch.compile, and inference with deep prompts against plain inference.

Peak memory: every configuration runs in a fresh subprocess, so the peak is its own. It is
the peak of the second train step over the memory in use before the first: on CUDA
`torch.cuda.max_memory_allocated`; on CPU the resident set size (VmHWM, reset through
/proc/self/clear_refs), with glibc's mmap threshold fixed so that freed tensors leave the
resident set. It counts activations, gradients and optimizer state, not the weights.

Time: all configurations of a model and batch are built in one subprocess and timed in
turn, step by step, so that other load on a shared machine falls on all of them alike.

    python benchmarks/train_step.py --quick        # about 10 minutes on a 2-core CPU
    python benchmarks/train_step.py                # batch 8 and 32, more repeats (over an hour)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

import vptune

TRAIN = ("linear", "vpt-shallow", "vpt-deep", "loop", "full", "vpt-deep-bf16", "vpt-deep-ckpt", "vpt-deep-compile")
INFER = ("infer-plain", "infer-vpt-deep", "infer-loop")
QUICK_VIT_B = ("linear", "vpt-shallow", "vpt-deep", "loop", "full", "vpt-deep-bf16", "infer-plain", "infer-vpt-deep")
NUM_CLASSES = 100
# dinov2-s14 is the architecture of the offline backbone dinov2-s14-imgfocus at its native
# 224 px, here with random weights like ViT-B: step time and memory do not depend on the values.
# Both use the paper's 50 prompts for ViT-B; --num-prompts changes it.
MODELS = {
    "dinov2-s14": ("dinov2-s14 @224", "vit_small_patch14_dinov2", 224, 50),
    "vit-b16": ("ViT-B/16 @224", "vit_base_patch16_224", 224, 50),
}


@dataclass(frozen=True)
class Config:
    label: str
    arch: str
    img_size: int
    num_prompts: int
    batch: int
    method: str
    device: str


def build(config: Config) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """The model and its forward (images -> logits) for a configuration."""
    method = {"linear": "linear", "full": "full", "infer-plain": "linear", "vpt-shallow": "vpt-shallow"}.get(
        config.method, "vpt-deep"
    )
    options = {"num_prompts": config.num_prompts} if method.startswith("vpt") else {}
    torch.manual_seed(0)
    model = vptune.create(config.arch, method, NUM_CLASSES, pretrained=False, img_size=config.img_size, **options)
    if config.method in INFER:
        model.requires_grad_(False)  # nothing trains; torch's FLOP counter also needs this
    if config.method == "vpt-deep-ckpt":
        model.set_grad_checkpointing(True)
    model = model.to(config.device)
    forward: Callable = model
    if config.method in ("loop", "infer-loop"):
        forward = lambda images: model.head(loop_features(model, images))  # noqa: E731
    elif config.method == "vpt-deep-compile":
        forward = torch.compile(model)
    return model, forward


def loop_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The straightforward VPT-Deep forward: every block runs whole on [prefix, prompts, patches]."""
    backbone, prompt = model.backbone, model.prompt
    x = backbone.norm_pre(backbone._pos_embed(backbone.patch_embed(images)))
    prefix, num_prompts = backbone.num_prefix_tokens, prompt.num_prompts
    for index, block in enumerate(backbone.blocks):
        if index > 0:
            x = torch.cat([x[:, :prefix], x[:, prefix + num_prompts:]], dim=1)
        tokens = prompt.block_tokens(index, x.shape[0], backbone)
        x = block(torch.cat([x[:, :prefix], tokens, x[:, prefix:]], dim=1))
    return backbone.fc_norm(backbone.norm(x)[:, 0])


def sdpa_flops() -> dict:
    """FLOP formulas for the CPU attention kernel, which torch's counter does not know."""
    aten = torch.ops.aten

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    def backward(grad, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad, query, key, value)

    return {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }


def train_step(config: Config) -> Callable[[], None]:
    """One synchronized train step (or inference pass) of a freshly built configuration."""
    device = torch.device(config.device)
    model, forward = build(config)
    images = torch.randn(config.batch, 3, config.img_size, config.img_size, device=device)
    labels = torch.randint(0, NUM_CLASSES, (config.batch,), device=device)
    inference = config.method in INFER
    model.train(not inference)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9) if params else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.method.endswith("bf16") else nullcontext()

    def step() -> None:
        if inference:
            with torch.no_grad():
                forward(images)
        else:
            with autocast:
                loss = F.cross_entropy(forward(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def measure_memory(config: Config) -> dict:
    """Peak memory of the second step over the memory before the first, in a fresh process.

    The first step's one-off allocations (and compilation) stay out; what it leaves behind,
    such as optimizer state, counts. A third step counts FLOPs: under the counter,
    checkpointing's peak doubled, so it must not run in the measured step.
    """
    device = torch.device(config.device)
    step = train_step(config)
    base = memory_reset(device)
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    memory_reset(device)
    step()
    peak = memory_peak(device, base)
    flops = None
    if config.method != "vpt-deep-compile":  # the counter cannot see inside compiled code
        with FlopCounterMode(display=False, custom_mapping=sdpa_flops()) as counter:
            step()
        flops = counter.get_total_flops()
    return {"first_seconds": first, "peak_mb": peak, "flops": flops}


def measure_times(configs: list[Config], repeats: int) -> dict:
    """Median step seconds of each configuration, timed in turn so that load on a shared
    machine falls on all of them alike; the matmul peak is measured between the rounds."""
    device = torch.device(configs[0].device)
    steps = [train_step(config) for config in configs]
    for config, step in zip(configs, steps):
        for _ in range(3 if config.method == "vpt-deep-compile" else 1):
            step()
    times: list[list[float]] = [[] for _ in steps]
    peaks = {"fp32": 0.0, "bf16": 0.0}
    for _ in range(repeats):
        for seconds, step in zip(times, steps):
            start = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - start)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            peaks[name] = max(peaks[name], matmul_peak(device, dtype))
    return {"seconds": [statistics.median(seconds) for seconds in times], "matmul_peak": peaks}


def memory_reset(device: torch.device) -> float:
    """Reset the peak counter; the bytes in use now."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return float(torch.cuda.memory_allocated(device))
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current VmRSS
    return _status_kb("VmRSS") * 1024.0


def memory_peak(device: torch.device, base: float) -> float:
    """Peak bytes above `base` since `memory_reset`, in MiB."""
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _status_kb("VmHWM") * 1024.0
    return (peak - base) / 2**20


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Best FLOP/s of a few large square matmuls: the machine's practical peak."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    best = float("inf")
    for _ in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def spawn(task: str, payload: object) -> object:
    """Run `task` ("memory" or "times") in a fresh interpreter and read its JSON result."""
    # One inductor compile thread: a pool of compile workers would compete with the steps.
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    if task == "memory":
        # Freed tensors leave the resident set at once; timing runs without this, as page
        # faults on every fresh allocation would slow the steps.
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    done = subprocess.run(
        [sys.executable, __file__, "--task", task, json.dumps(payload)], capture_output=True, text=True, env=env
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": reason[:160]}


def report(group: list[dict], peaks: dict[str, float] | None) -> list[str]:
    """A markdown table of one model and batch, and its target checks (`peaks`: None if timing failed)."""
    rows = {result["method"]: result for result in group}
    first = group[0]
    lines = [f"\n### {first['label']}, batch {first['batch']}\n"]
    if peaks:
        lines.append(f"Matmul peak measured between the timed rounds: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
                     f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s.\n")
    lines += ["| method | step ms (median) | first step s | peak MiB | GFLOP/step | GFLOP/s | % of matmul peak |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for method, row in rows.items():
        if "error" in row:
            lines.append(f"| {method} | failed: {row['error']} | | | | | |")
            continue
        flops = row["flops"] or rows.get("vpt-deep", {}).get("flops")  # compiled: same math as eager
        rate = flops / row["seconds"] if flops else None
        peak = peaks["bf16" if method.endswith("bf16") else "fp32"]
        lines.append(
            f"| {method} | {row['seconds'] * 1e3:.0f} | {row['first_seconds']:.1f} | {row['peak_mb']:.0f} | "
            + (f"{flops / 1e9:.1f} | {rate / 1e9:.0f} | {100 * rate / peak:.0f}% |" if rate else "| | |")
        )
    return lines + ["", *checks(rows)]


def checks(rows: dict[str, dict]) -> list[str]:
    """Ratios against the in-run references, with the targets they are held to."""

    def ratio(a: str, b: str, key: str) -> float | None:
        if a in rows and b in rows and "error" not in rows[a] and "error" not in rows[b]:
            return rows[a][key] / rows[b][key]
        return None

    out = []
    for text, value, target, better_below in [
        ("VPT-Deep speed-up over the straightforward loop", ratio("loop", "vpt-deep", "seconds"), 1.25, False),
        ("VPT-Deep peak memory / loop", ratio("vpt-deep", "loop", "peak_mb"), 0.8, True),
        ("VPT-Deep step time / full fine-tuning", ratio("vpt-deep", "full", "seconds"), None, True),
        ("VPT-Deep peak memory / full fine-tuning", ratio("vpt-deep", "full", "peak_mb"), None, True),
        ("VPT-Deep bf16 speed-up over the fp32 loop", ratio("loop", "vpt-deep-bf16", "seconds"), 2.0, False),
        ("VPT-Deep checkpointed peak memory / VPT-Deep", ratio("vpt-deep-ckpt", "vpt-deep", "peak_mb"), None, True),
        ("VPT-Deep compiled speed-up over eager", ratio("vpt-deep", "vpt-deep-compile", "seconds"), None, False),
        ("inference with deep prompts / plain inference", ratio("infer-vpt-deep", "infer-plain", "seconds"), 1.15, True),
        ("inference, straightforward loop / plain inference", ratio("infer-loop", "infer-plain", "seconds"), None, True),
    ]:
        if value is None:
            continue
        verdict = ""
        if target is not None:
            met = value <= target if better_below else value >= target
            verdict = f" (target {'<=' if better_below else '>='} {target}: {'met' if met else 'MISSED'})"
        out.append(f"- {text}: {value:.2f}x{verdict}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="batch 8, 5 timed steps; on ViT-B only the methods the targets need")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", help="default: 8 32 (--quick: 8)")
    parser.add_argument("--repeats", type=int, help="timed steps per configuration (default 10, --quick 5)")
    parser.add_argument("--methods", nargs="+", choices=TRAIN + INFER, help="default: all")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--num-prompts", type=int, help="prompts per block (default 50)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--task", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.num_prompts is not None and args.num_prompts < 1:
        parser.error("--num-prompts must be at least 1")
    if args.task:
        task, payload = args.task[0], json.loads(args.task[1])
        if task == "memory":
            result = measure_memory(Config(**payload))
        else:
            result = measure_times([Config(**c) for c in payload["configs"]], payload["repeats"])
        print("RESULT " + json.dumps(result), flush=True)
        return

    batches = args.batches or ([8] if args.quick else [8, 32])
    repeats = args.repeats or (5 if args.quick else 10)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {name}; torch {torch.__version__}; {repeats} timed rounds", flush=True)
    results = []
    for key in args.models:
        label, arch, img_size, num_prompts = MODELS[key]
        num_prompts = args.num_prompts if args.num_prompts is not None else num_prompts
        label = f"{label}, p={num_prompts}"
        methods = args.methods or (QUICK_VIT_B if args.quick and key == "vit-b16" else TRAIN + INFER)
        for batch in batches:
            configs = [Config(label, arch, img_size, num_prompts, batch, m, args.device) for m in methods]
            group = [{**asdict(c), **spawn("memory", asdict(c))} for c in configs]
            ok = [c for c, r in zip(configs, group) if "error" not in r]
            timed = spawn("times", {"configs": [asdict(c) for c in ok], "repeats": repeats})
            for result in group:
                if "error" in timed:
                    result.setdefault("error", timed["error"])
                elif "error" not in result:
                    result["seconds"] = timed["seconds"][[c.method for c in ok].index(result["method"])]
                    result["matmul_peak"] = timed["matmul_peak"]
            # Each group is printed and saved as it completes, so a run cut short keeps them.
            print("\n".join(report(group, timed.get("matmul_peak"))), flush=True)
            results += group
            if args.json:
                with open(args.json, "w") as out:
                    json.dump({"device": name, "repeats": repeats, "results": results}, out, indent=1)

if __name__ == "__main__":
    main()
