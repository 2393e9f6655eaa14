"""Prompt tokens for timm VisionTransformers: shallow, deep, block ranges and the location ablations."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from ..errors import MethodError
from .vit_fast import block_forward_rows

LOCATIONS = ("prepend", "add", "prepend-pixel", "concat-channel")
OUTPUTS = ("cls", "image-pool", "prompt-pool", "global-pool")


def init_prompts(values: torch.Tensor, patch_size: tuple[int, int], dim: int) -> torch.Tensor:
    """Fill `values` in place from uniform(-v, v), `v = sqrt(6 / (3 * patch_h * patch_w + dim))` (the paper's init)."""
    bound = math.sqrt(6.0 / float(3 * patch_size[0] * patch_size[1] + dim))
    return nn.init.uniform_(values, -bound, bound)


@dataclass(frozen=True)
class PrototypeTarget:
    """Prompt values a prototype init (prompts/prototypes.py) fills: `embeddings` `(blocks, p, embed_dim)`,
    row `i` the tokens prepended before block `first_block + i` (0-based)."""

    first_block: int
    embeddings: nn.Parameter

    @property
    def blocks(self) -> list[int]:
        return list(range(self.first_block, self.first_block + self.embeddings.shape[0]))


class VitPrompt(nn.Module):
    """Learnable prompts for blocks `first_block..last_block` (0-based, inclusive) of a ViT.

    `embeddings` is shaped `(num_prompted_blocks, num_prompts, prompt_dim)`. Prompts enter
    after the position embedding and after all prefix tokens at `first_block`; each later
    block of the range replaces the previous block's prompt outputs with its own prompts;
    after `last_block` the prompt outputs travel on like shallow prompts.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_prompts: int,
        first_block: int,
        last_block: int,
        prompt_dim: int | None = None,
        dropout: float = 0.0,
        location: str = "prepend",
    ) -> None:
        super().__init__()
        embed_dim = backbone.embed_dim
        patch_h, patch_w = backbone.patch_embed.patch_size
        self.location = location
        self.first_block = first_block
        self.last_block = last_block
        num_blocks = last_block - first_block + 1
        if location == "prepend-pixel":
            # Learnable pixel patches, embedded by the frozen patch projection.
            shape = (1, num_prompts, backbone.patch_embed.proj.in_channels * patch_h * patch_w)
        elif location == "concat-channel":
            # One extra learnable input channel, the size of the image.
            shape = (1, *backbone.patch_embed.img_size)
        else:
            shape = (num_blocks, num_prompts, prompt_dim or embed_dim)
        self.embeddings = nn.Parameter(init_prompts(torch.empty(shape), (patch_h, patch_w), prompt_dim or embed_dim))
        self.proj: nn.Module = nn.Identity()
        if prompt_dim is not None and location in ("prepend", "add"):
            self.proj = nn.Linear(prompt_dim, embed_dim)
            nn.init.kaiming_normal_(self.proj.weight, a=0, mode="fan_out")
        self.dropout = nn.Dropout(dropout)

    def no_weight_decay(self) -> set[str]:
        return {"embeddings"}

    @property
    def num_prompts(self) -> int:
        """Tokens the prompts add to the sequence (0 for `add` and `concat-channel`)."""
        return self.embeddings.shape[1] if self.location in ("prepend", "prepend-pixel") else 0

    def prototype_target(self) -> PrototypeTarget | None:
        """The prompt values a prototype init fills (prompts/prototypes.py): prepended tokens learnt in the
        model's width; None for the location ablations and projected prompts."""
        if self.location != "prepend" or not isinstance(self.proj, nn.Identity):
            return None
        return PrototypeTarget(self.first_block, self.embeddings)

    @property
    def shares_batch(self) -> bool:
        """Whether these prompts can enter a batch shared with other tasks' samples (`SharedPrompts`):
        prompts prepended to the tokens can; the location ablations change every token or the image."""
        return self.location == "prepend"

    def tokens(self, count: int) -> torch.Tensor:
        """Prompt tokens `(count, p, embed_dim)` of the first `count` prompted blocks (location `prepend`)."""
        return self.dropout(self.proj(self.embeddings[:count]))

    def block_tokens(self, index: int, batch: int, backbone: nn.Module) -> torch.Tensor:
        """Prompt tokens `(batch, p, embed_dim)` for prompted block `index` (0 = first_block)."""
        if self.location == "prepend-pixel":
            patch_embed = backbone.patch_embed
            pixels = self.embeddings[0].view(-1, patch_embed.proj.in_channels, *patch_embed.patch_size)
            tokens = patch_embed.norm(patch_embed.proj(pixels).flatten(1))
        else:
            tokens = self.proj(self.embeddings[index])
        return self.dropout(tokens.unsqueeze(0).expand(batch, -1, -1))

    def key_values(self) -> torch.Tensor | None:
        """Keys and values every block's attention takes besides its own, `(depth, 2, heads, Q, head_dim)`,
        or None (VPT adds none; E2VPT's key-value prompts do)."""
        return None

    def attention_prompts(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Keys and values `(1, heads, Q, head_dim)` block `index` appends to its attention's, or None."""
        return None

    def patch_tokens(self, images: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
        """Patch tokens of the image (with the learnable channel for `concat-channel`)."""
        return self.channel_tokens(images, backbone) if self.location == "concat-channel" else backbone.patch_embed(images)

    def enter_block(
        self, index: int, x: torch.Tensor, backbone: nn.Module, *, final: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The sequence entering block `index`, the tokens that give it keys and values only, and
        a key mask (always None: one task has no padded slots).

        `final`: block `index` computes only [CLS], so no prompt output of it is read.
        """
        if not self.first_block <= index <= self.last_block:
            return x, None, None
        tokens = self.block_tokens(index - self.first_block, x.shape[0], backbone)
        prefix = backbone.num_prefix_tokens
        if self.location == "add":
            return torch.cat([x[:, :prefix], x[:, prefix:] + tokens], dim=1), None, None
        if self.location == "concat-channel":
            return x, None, None
        if index < self.last_block or final:
            # The next block replaces these prompts' outputs (or the head reads only [CLS]):
            # they only give keys and values.
            return x, tokens, None
        # The last prompted block's outputs travel on like shallow prompts.
        return torch.cat([x[:, :prefix], tokens, x[:, prefix:]], dim=1), None, None

    def channel_tokens(self, images: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
        """Patch tokens of the image with the learnable channel concatenated.

        The frozen projection has no weights for a fourth channel; the extra channel is
        projected with the mean of the RGB kernels, as if the kernel were extended.
        """
        patch_embed = backbone.patch_embed
        weight = patch_embed.proj.weight.mean(dim=1, keepdim=True)
        channel = self.embeddings.unsqueeze(0).expand(images.shape[0], -1, -1, -1)
        x = patch_embed.proj(images) + F.conv2d(channel, weight, stride=patch_embed.proj.stride)
        return patch_embed.norm(x.flatten(2).transpose(1, 2))


class SharedPrompts(Protocol):
    """What one task's prompts give a ViT forward shared with other tasks' samples (prompts/vit_samples.py).

    Blocks `first_block..last_block` (0-based) take `num_prompts` tokens each, prepended after
    the prefix tokens: `tokens(count)` are those of the first `count` prompted blocks, used as
    keys and values where the next block replaces their outputs; `block_tokens` are the tokens
    whose outputs travel on (shallow prompts, the end of a block range). `VitPrompt` is one;
    a method that computes its tokens another way (e.g. from a transform of learned values)
    implements the same members and is served mixed unchanged. `key_values` are keys and values
    appended to each attention after its qkv projection (E2VPT), None for none; they are mixed
    per sample in vit_samples.py. Serving only hands each task's `SharedPart.prompts` to the
    family's batched forward, so it does not change.
    """

    first_block: int
    last_block: int

    @property
    def num_prompts(self) -> int: ...

    def tokens(self, count: int) -> torch.Tensor: ...

    def block_tokens(self, index: int, batch: int, backbone: nn.Module) -> torch.Tensor: ...

    def key_values(self) -> torch.Tensor | None: ...


class BlockPrompts(Protocol):
    """What the prompted forward asks of prompts: `VitPrompt`, or per-sample prompts of several tasks."""

    @property
    def num_prompts(self) -> int: ...

    def patch_tokens(self, images: torch.Tensor, backbone: nn.Module) -> torch.Tensor: ...

    def enter_block(
        self, index: int, x: torch.Tensor, backbone: nn.Module, *, final: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]: ...

    def attention_prompts(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None: ...


def is_vit(backbone: nn.Module) -> bool:
    """Whether `backbone` is a timm VisionTransformer prompt tokens can enter."""
    needed = ("patch_embed", "_pos_embed", "blocks", "norm", "num_prefix_tokens")
    return all(hasattr(backbone, name) for name in needed)


def reads_only_cls(backbone: nn.Module, output: str) -> bool:
    """Whether the features are the final-norm [CLS] token alone (its last block needs one row)."""
    return (
        output == "cls"
        and getattr(backbone, "has_class_token", False)
        and getattr(backbone, "global_pool", None) == "token"
        and getattr(backbone, "attn_pool", None) is None
    )


def stem_tokens(backbone: nn.Module, patch_tokens: torch.Tensor) -> torch.Tensor:
    """Patch tokens to the sequence entering block 1: prefix tokens, position embedding, pre-norm."""
    return backbone.norm_pre(backbone.patch_drop(backbone._pos_embed(patch_tokens)))


def _block_outputs(
    backbone: nn.Module,
    images: torch.Tensor,
    prompt: BlockPrompts | None,
    *,
    cls_only: bool = False,
    checkpoint: bool = False,
) -> Iterator[torch.Tensor]:
    """Each block's output `[prefix, prompts, patches]` in turn.

    `prompt` is one task's `VitPrompt`, or per-sample prompts of several tasks
    (prompts/vit_samples.py), which also mask padded prompt slots out of attention.

    Rows nobody reads are not computed: prompt outputs that the next block replaces,
    and with `cls_only` every row of the last block but [CLS] (then it yields `(B, 1, C)`).
    """
    x = stem_tokens(backbone, prompt.patch_tokens(images, backbone) if prompt is not None else backbone.patch_embed(images))
    prefix = backbone.num_prefix_tokens
    last = len(backbone.blocks) - 1
    for index, block in enumerate(backbone.blocks):
        kv_tokens = key_mask = kv_prompts = None
        if prompt is not None:
            x, kv_tokens, key_mask = prompt.enter_block(index, x, backbone, final=cls_only and index == last)
            kv_prompts = prompt.attention_prompts(index)
        rows = slice(0, 1) if cls_only and index == last else slice(None)
        if checkpoint and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(
                block_forward_rows, block, x, rows, kv_tokens, prefix, key_mask, kv_prompts, use_reentrant=False
            )
        else:
            x = block_forward_rows(block, x, rows, kv_tokens, prefix, key_mask, kv_prompts)
        yield x


def vit_tokens(
    backbone: nn.Module,
    images: torch.Tensor,
    prompt: BlockPrompts | None,
    *,
    cls_only: bool = False,
    checkpoint: bool = False,
) -> torch.Tensor:
    """Final-norm tokens `[prefix, prompts, patches]` of the prompted backbone (see `_block_outputs`).

    With `cls_only` only [CLS] is computed in the last block (the result is `(B, 1, C)`).
    `checkpoint` recomputes each block in the backward pass to save memory.
    """
    for x in _block_outputs(backbone, images, prompt, cls_only=cls_only, checkpoint=checkpoint):
        pass
    return backbone.norm(x)


def vit_block_maps(
    backbone: nn.Module,
    images: torch.Tensor,
    prompt: BlockPrompts | None,
    blocks: Sequence[int],
    *,
    checkpoint: bool = False,
) -> list[torch.Tensor]:
    """Patch tokens leaving each of `blocks` (0-based), as `(B, C, h, w)` maps on the patch grid.

    One prompted forward, stopped after the last block asked for; prefix and prompt tokens
    are dropped (patches are always the last `h * w` tokens), and no final norm is applied
    (as the block outputs a decoder reads in mmsegmentation's ViT).
    """
    patch_h, patch_w = backbone.patch_embed.patch_size
    grid = (images.shape[-2] // patch_h, images.shape[-1] // patch_w)
    wanted, maps = set(blocks), {}
    outputs = _block_outputs(backbone, images, prompt, checkpoint=checkpoint)
    for index, x in enumerate(outputs):
        if index in wanted:
            patches = x[:, x.shape[1] - grid[0] * grid[1]:]
            maps[index] = patches.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)
            if len(maps) == len(wanted):
                break
    return [maps[index] for index in blocks]


def vit_features(
    backbone: nn.Module, images: torch.Tensor, prompt: BlockPrompts | None, output: str, *, checkpoint: bool = False
) -> torch.Tensor:
    """Pre-head features `(B, num_features)` of the prompted backbone (see `pool_tokens`)."""
    if reads_only_cls(backbone, output):
        tokens = vit_tokens(backbone, images, prompt, cls_only=True, checkpoint=checkpoint)
        # What the backbone's token pooling reads: [CLS], then its fc_norm.
        return backbone.fc_norm(tokens[:, 0])
    tokens = vit_tokens(backbone, images, prompt, checkpoint=checkpoint)
    return pool_tokens(backbone, tokens, prompt.num_prompts if prompt is not None else 0, output)


def pool_tokens(backbone: nn.Module, tokens: torch.Tensor, num_prompts: int, output: str) -> torch.Tensor:
    """Pre-head features `(B, num_features)` read from the final tokens.

    `cls` is the backbone's own pooling (its [CLS], or its average/attention pool over image
    patches) applied to the sequence without prompts, so prompts never leak into an
    average-pool head. The other outputs are the paper's final-output ablations.
    """
    prefix = backbone.num_prefix_tokens
    if output == "cls":
        pooled = backbone.pool(torch.cat([tokens[:, :prefix], tokens[:, prefix + num_prompts:]], dim=1))
    elif output == "image-pool":
        pooled = tokens[:, prefix + num_prompts:].mean(dim=1)
    elif output == "prompt-pool":
        if num_prompts == 0:
            raise MethodError("output 'prompt-pool' needs prompt tokens in the sequence")
        pooled = tokens[:, prefix:prefix + num_prompts].mean(dim=1)
    else:
        pooled = tokens[:, prefix:].mean(dim=1)
    return backbone.fc_norm(pooled)
