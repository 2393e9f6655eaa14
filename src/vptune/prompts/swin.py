"""Prompt tokens for timm SwinTransformers: copied into every window, averaged back out.

A prompted block sees, in every attention window, `[prompts, window tokens]`. Prompts get
no relative-position bias and are never masked (they attend to, and are attended by, every
token of the window, also in shifted windows); their outputs are averaged over the windows of
the same image. Prompts live within one stage: patch merging drops them (they have no place
on the 2x2 grid), and deep prompts enter fresh at every block of every stage, at that
stage's width. The head reads timm's own global pool of the patch tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.models.swin_transformer import (SwinTransformer, SwinTransformerBlock, WindowAttention, window_partition,
                                         window_reverse)
from torch import nn

from .family import FAMILIES, BackboneFamily, PromptSettings
from .vit import init_prompts


class SwinPrompt(nn.Module):
    """Learnable prompts for a timm SwinTransformer.

    Deep: `embeddings[s]` is `(depth_s, num_prompts, dim_s)`, one set per block of stage `s`.
    Shallow: one set `(1, num_prompts, dim_0)` entering the first block; its outputs travel
    through the first stage. Init: uniform(-v, v), `v = sqrt(6 / (3 * patch_h * patch_w + dim_s))`.
    """

    shares_batch = False  # Swin has no forward shared by several tasks' samples

    def __init__(self, backbone: nn.Module, *, num_prompts: int, deep: bool, dropout: float = 0.0) -> None:
        super().__init__()
        patch_size = backbone.patch_embed.patch_size
        stages = backbone.layers if deep else backbone.layers[:1]
        self.deep = deep
        self.embeddings = nn.ParameterList()
        for stage in stages:
            dim = stage.blocks[0].dim
            values = torch.empty(len(stage.blocks) if deep else 1, num_prompts, dim)
            self.embeddings.append(nn.Parameter(init_prompts(values, patch_size, dim)))
        self.dropout = nn.Dropout(dropout)

    def no_weight_decay(self) -> set[str]:
        return {f"embeddings.{i}" for i in range(len(self.embeddings))}

    def block_tokens(self, stage: int, block: int, batch: int) -> torch.Tensor | None:
        """New prompts `(batch, p, dim)` entering this block, or None to keep the current ones."""
        if stage >= len(self.embeddings) or (not self.deep and block > 0):
            return None
        return self.dropout(self.embeddings[stage][block].unsqueeze(0).expand(batch, -1, -1))

    def attention_prompts(self, stage: int, block: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Keys and values `(heads, Q, head_dim)` this block's window attention appends to its own, or None
        (VPT adds none; E2VPT's key-value prompts do)."""
        return None


def swin_features(
    backbone: nn.Module, images: torch.Tensor, prompt: SwinPrompt, *, checkpoint: bool = False
) -> torch.Tensor:
    """Pre-head features `(B, num_features)`: global-pooled final-norm patch tokens.

    `checkpoint` recomputes each prompted block in the backward pass to save memory.
    """
    x = backbone.patch_embed(images)
    for stage_index, stage in enumerate(backbone.layers):
        x = stage.downsample(x)
        prompts = None  # the previous stage's prompt outputs are not merged
        for block_index, block in enumerate(stage.blocks):
            new = prompt.block_tokens(stage_index, block_index, x.shape[0])
            prompts = new if new is not None else prompts
            key_values = prompt.attention_prompts(stage_index, block_index)
            if prompts is None:
                x = block(x)
            elif checkpoint and torch.is_grad_enabled():
                x, prompts = torch.utils.checkpoint.checkpoint(prompted_block, block, x, prompts, key_values,
                                                               use_reentrant=False)
            else:
                x, prompts = prompted_block(block, x, prompts, key_values)
    return backbone.forward_head(backbone.norm(x), pre_logits=True)


def prompted_block(
    block: SwinTransformerBlock,
    x: torch.Tensor,
    prompts: torch.Tensor,
    key_values: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `block` on patch tokens `x` `(B, H, W, C)` with prompts `(B, p, C)`; both outputs.

    `key_values`, when given, are keys and values `(heads, Q, head_dim)` every window's attention
    appends to its own (no position bias, never masked, no query rows).
    """
    batch, height, width, channels = x.shape
    num_prompts = prompts.shape[1]
    attn_x, attn_prompts = _window_attention(block, block.norm1(x), block.norm1(prompts), key_values)
    # Residuals and the MLP treat prompts as ordinary tokens, as in a ViT block.
    tokens = torch.cat([prompts, x.reshape(batch, -1, channels)], dim=1)
    tokens = tokens + block.drop_path1(torch.cat([attn_prompts, attn_x.reshape(batch, -1, channels)], dim=1))
    tokens = tokens + block.drop_path2(block.mlp(block.norm2(tokens)))
    return tokens[:, num_prompts:].reshape(batch, height, width, channels), tokens[:, :num_prompts]


def _window_attention(
    block: SwinTransformerBlock,
    x: torch.Tensor,
    prompts: torch.Tensor,
    key_values: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    # timm's SwinTransformerBlock._attn (shift, pad, partition, attend, reverse), with the
    # prompts copied into every window of their own image before attention.
    batch, height, width, channels = x.shape
    shift = block.shift_size
    if any(shift):
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    pad_h = (block.window_size[0] - height % block.window_size[0]) % block.window_size[0]
    pad_w = (block.window_size[1] - width % block.window_size[1]) % block.window_size[1]
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    padded_h, padded_w = x.shape[1:3]
    mask = block.get_attn_mask(x) if block.dynamic_mask else block.attn_mask
    windows = window_partition(x, block.window_size).view(-1, block.window_area, channels)
    num_windows = windows.shape[0] // batch
    num_prompts = prompts.shape[1]
    # Windows are ordered image by image, so each image's prompts repeat over its own windows.
    tokens = torch.cat([prompts.repeat_interleave(num_windows, dim=0), windows], dim=1)
    out = _attention(block.attn, tokens, mask, num_prompts, key_values)
    prompts = out[:, :num_prompts].reshape(batch, num_windows, num_prompts, channels).mean(dim=1)
    windows = out[:, num_prompts:].reshape(-1, *block.window_size, channels)
    x = window_reverse(windows, block.window_size, padded_h, padded_w)[:, :height, :width]
    if any(shift):
        x = torch.roll(x, shifts=shift, dims=(1, 2))
    return x, prompts


def _attention(
    attn: WindowAttention,
    tokens: torch.Tensor,
    mask: torch.Tensor | None,
    num_prompts: int,
    key_values: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    # WindowAttention.forward with the relative-position bias and the shift mask padded by
    # zeros for the prompt rows and columns (and the appended key-value columns): no position
    # bias, never masked.
    batch_windows, length, _ = tokens.shape
    qkv = attn.qkv(tokens).reshape(batch_windows, length, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    extra = 0
    if key_values is not None:
        keys, values = key_values
        extra = keys.shape[1]
        k = torch.cat([k, keys.expand(batch_windows, -1, -1, -1)], dim=2)
        v = torch.cat([v, values.expand(batch_windows, -1, -1, -1)], dim=2)
    pad = (num_prompts, extra, num_prompts, 0)
    bias = F.pad(attn._get_rel_pos_bias(), pad)
    if mask is not None:
        num_windows = mask.shape[0]
        mask = F.pad(mask, pad).view(1, num_windows, 1, length, length + extra)
        bias = (bias.unsqueeze(1) + mask).expand(batch_windows // num_windows, -1, -1, -1, -1)
        bias = bias.reshape(batch_windows, attn.num_heads, length, length + extra)
    x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    return attn.proj_drop(attn.proj(x.transpose(1, 2).reshape(batch_windows, length, -1)))


@FAMILIES.register
class SwinFamily(BackboneFamily):
    """timm SwinTransformers: prompts copied into every attention window."""

    name = "swin"
    label = "Swin"
    default_prompts = 10

    def matches(self, backbone: nn.Module) -> bool:
        return isinstance(backbone, SwinTransformer)

    def features(
        self, backbone: nn.Module, images: torch.Tensor, prompt: nn.Module | None, output: str, *, checkpoint: bool
    ) -> torch.Tensor:
        return swin_features(backbone, images, prompt, checkpoint=checkpoint)

    def blocks(self, backbone: nn.Module) -> list[nn.Module]:
        return [block for stage in backbone.layers for block in stage.blocks]

    def vpt_prompt(self, backbone: nn.Module, settings: PromptSettings) -> tuple[SwinPrompt, PromptSettings]:
        self.refuse_vit_options(backbone, settings)
        prompt = SwinPrompt(backbone, num_prompts=settings.num_prompts, deep=settings.deep, dropout=settings.dropout)
        return prompt, settings
