"""One timm ViT block computed only for the token rows whose outputs are used.

VPT-Deep replaces every block's prompt outputs with the next block's prompts, and a
[CLS] head reads one row of the last block, so most prompted blocks compute rows nobody
reads. Here such tokens give keys and values only: no query, attention row, output
projection or MLP is computed for them. The result equals the plain block's rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Attention
from timm.models.vision_transformer import Block
from torch import nn

from ..errors import MethodError


def handles_rows(block: nn.Module) -> bool:
    """Whether `block_forward_rows` computes `block` row by row rather than whole.

    Only timm's pre-norm `Block` with the standard `Attention` and a plain qkv `Linear`
    whose weight is split here: no wrapper (a LoRA layer) or forward hook (SSF) on the block,
    its attention or qkv, which this computation would bypass. And only in eval mode:
    dropout and drop-path in a training block draw random numbers per row, so a training
    block runs whole to draw exactly what the plain forward draws.
    """
    if type(block) is not Block or type(block.attn) is not Attention or type(block.attn.qkv) is not nn.Linear:
        return False
    hooked = any(module._forward_hooks or module._forward_pre_hooks for module in (block, block.attn, block.attn.qkv))
    return not hooked and not block.training


def block_forward_rows(
    block: nn.Module,
    x: torch.Tensor,
    rows: slice = slice(None),
    kv_tokens: torch.Tensor | None = None,
    kv_at: int = 0,
    key_mask: torch.Tensor | None = None,
    kv_prompts: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Outputs of `block` for the tokens `x[:, rows]`.

    Attention runs over all of `x` with `kv_tokens` (B, P, C) inserted before position
    `kv_at`, as if the block saw `[x[:, :kv_at], kv_tokens, x[:, kv_at:]]`; the outputs
    of the inserted tokens and of rows outside `rows` are not computed. `kv_prompts` are
    keys and values `(B or 1, heads, Q, head_dim)` appended to the attention's own after its
    projection and q/k norms (E2VPT's key-value prompts). `key_mask` (B, L + P + Q) bool,
    over `[x, kv_tokens, kv_prompts]`, hides the False ones from every query (padded prompt
    slots of a multi-task batch). Blocks that `handles_rows` refuses run whole on that
    sequence and are sliced; they cannot take `kv_prompts`.
    """
    if not handles_rows(block):
        if kv_prompts is not None:
            raise MethodError(f"key-value prompts need timm's plain ViT Block in eval mode, not {type(block).__name__}")
        if kv_tokens is not None:
            x = torch.cat([x[:, :kv_at], kv_tokens, x[:, kv_at:]], dim=1)
            if key_mask is not None:
                length = key_mask.shape[1] - kv_tokens.shape[1]
                key_mask = torch.cat([key_mask[:, :kv_at], key_mask[:, length:], key_mask[:, kv_at:length]], dim=1)
        out = block(x) if key_mask is None else block(x, attn_mask=key_mask[:, None, None, :])
        if kv_tokens is not None:
            out = torch.cat([out[:, :kv_at], out[:, kv_at + kv_tokens.shape[1]:]], dim=1)
        return out[:, rows]

    attn = block.attn
    heads, head_dim = attn.num_heads, attn.head_dim
    width = heads * head_dim
    every_row = rows == slice(None)
    normed = block.norm1(x)
    queries_in = normed if every_row else normed[:, rows]
    keys_in = normed
    if kv_tokens is not None:
        # Attention does not depend on the order of its keys, so the extra tokens go last:
        # slicing `normed` around `kv_at` would cost zero-filled full-size gradients.
        keys_in = torch.cat([normed, block.norm1(kv_tokens)], dim=1)
    batch, num_queries, num_keys = x.shape[0], queries_in.shape[1], keys_in.shape[1]

    # The fused qkv projection split in two: queries for the kept rows, keys and values for all.
    q_weight, kv_weight = attn.qkv.weight.split([width, 2 * width])
    q_bias, kv_bias = attn.qkv.bias.split([width, 2 * width]) if attn.qkv.bias is not None else (None, None)
    q = F.linear(queries_in, q_weight, q_bias).view(batch, num_queries, heads, head_dim).transpose(1, 2)
    kv = F.linear(keys_in, kv_weight, kv_bias).view(batch, num_keys, 2, heads, head_dim)
    k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if kv_prompts is not None:
        # Keys and values as the attention compares them: they pass no projection or norm.
        prompt_k, prompt_v = (p.to(k.dtype).expand(batch, -1, -1, -1) for p in kv_prompts)
        k, v = torch.cat([k, prompt_k], dim=2), torch.cat([v, prompt_v], dim=2)

    out = attention(q, k, v, attn.scale, None if key_mask is None else key_mask[:, None, None, :])
    out = attn.norm(out.transpose(1, 2).reshape(batch, num_queries, width))
    gate = getattr(attn, "gate", None)
    if gate is not None:
        out = out * gate(queries_in).sigmoid()
    # Eval mode: proj_drop, drop_path1/2 and the MLP's dropout are identities.
    y = (x if every_row else x[:, rows]) + block.ls1(attn.proj(out))
    return y + block.ls2(block.mlp(block.norm2(y)))


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """`scaled_dot_product_attention` (`mask`: its boolean `attn_mask`); under bf16 autocast on a CPU it runs in fp32.

    torch's CPU attention kernel is slower in bf16 than in fp32 (forward and backward
    measured in docs/performance.md), so there the casts pay for themselves.
    """
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
