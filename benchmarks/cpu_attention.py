"""Forward + backward time of CPU `scaled_dot_product_attention` in fp32 and in bf16.

The prompted ViT forward runs attention in fp32 under bf16 autocast on a CPU
(`vptune.prompts.vit_fast.attention`); this measures why, at the shapes of a VPT-Deep
block: queries are the image rows, keys and values also the prompts.

    python benchmarks/cpu_attention.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# (label, heads, head dim, query rows, prompts): DINOv2-S/14 and ViT-B/16 at 224 px, 50 prompts.
SHAPES = (("dinov2-s14", 6, 64, 257, 50), ("vit-b16", 12, 64, 197, 50))


def step_ms(dtype: torch.dtype, batch: int, heads: int, head_dim: int, rows: int, prompts: int, repeats: int) -> float:
    """Median milliseconds of one attention forward and backward."""
    q = torch.randn(batch, heads, rows, head_dim, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(batch, heads, rows + prompts, head_dim, dtype=dtype, requires_grad=True) for _ in range(2))
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"# CPU, {torch.get_num_threads()} threads; torch {torch.__version__}; batch {args.batch}")
    print("| shape | fp32 ms | bf16 ms | bf16 / fp32 |\n|---|---:|---:|---:|")
    for label, heads, head_dim, rows, prompts in SHAPES:
        fp32, bf16 = (step_ms(dtype, args.batch, heads, head_dim, rows, prompts, args.repeats)
                      for dtype in (torch.float32, torch.bfloat16))
        print(f"| {label} ({heads} heads, {rows} queries, {rows + prompts} keys) | {fp32:.1f} | {bf16:.1f} | "
              f"{bf16 / fp32:.2f}x |")


if __name__ == "__main__":
    main()
