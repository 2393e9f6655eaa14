"""An independent, literal implementation of the paper's prompted forward, for checking."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_logits(backbone, prompts, head, first: int, last: int, *, at_end: bool = False) -> callable:
    """Forward of VPT with `prompts[(i - first)]` entering block i for i in [first, last] (0-based).

    With `at_end`, prompts sit after the patch tokens instead of after the prefix.
    """

    def forward(images: torch.Tensor) -> torch.Tensor:
        x = backbone._pos_embed(backbone.patch_embed(images))
        x = backbone.norm_pre(x)
        batch, prefix, p = x.shape[0], backbone.num_prefix_tokens, prompts.shape[1]
        for i in range(len(backbone.blocks)):
            if first <= i <= last:
                current = prompts[i - first].unsqueeze(0).expand(batch, -1, -1)
                if i > first:  # drop the previous block's prompt outputs
                    x = x[:, :-p] if at_end else torch.cat([x[:, :prefix], x[:, prefix + p:]], dim=1)
                x = torch.cat([x, current], 1) if at_end else torch.cat([x[:, :prefix], current, x[:, prefix:]], 1)
            x = backbone.blocks[i](x)
        x = backbone.norm(x)
        return head(backbone.fc_norm(x[:, 0]))

    return forward


def plain_block_outputs(backbone, images: torch.Tensor, prompt) -> list[tuple[torch.Tensor, int]]:
    """The plain prompted forward: every block runs whole on `[prefix, prompts, patches]`.

    This is the straightforward loop vptune's row-saving forward must reproduce; it uses
    the prompt module's own tokens (dropout, projection, locations). Returns each block's
    output with the number of prompt tokens in it.
    """
    if prompt is not None and prompt.location == "concat-channel":
        x = prompt.channel_tokens(images, backbone)
    else:
        x = backbone.patch_embed(images)
    x = backbone.norm_pre(backbone._pos_embed(x))
    prefix, inserted, outputs = backbone.num_prefix_tokens, 0, []
    for index, block in enumerate(backbone.blocks):
        if prompt is not None and prompt.first_block <= index <= prompt.last_block:
            tokens = prompt.block_tokens(index - prompt.first_block, x.shape[0], backbone)
            if prompt.location == "add":
                x = torch.cat([x[:, :prefix], x[:, prefix:] + tokens], dim=1)
            elif prompt.location != "concat-channel":
                # Insert at the first prompted block, replace the previous outputs after it.
                x = torch.cat([x[:, :prefix], tokens, x[:, prefix + inserted:]], dim=1)
                inserted = tokens.shape[1]
        x = block(x)
        outputs.append((x, inserted))
    return outputs


def plain_features(backbone, images: torch.Tensor, prompt, output: str = "cls") -> torch.Tensor:
    """Pooled features of the plain prompted forward (`plain_block_outputs`)."""
    from vptune.prompts.vit import pool_tokens

    x, _ = plain_block_outputs(backbone, images, prompt)[-1]
    num_prompts = prompt.num_prompts if prompt is not None else 0
    return pool_tokens(backbone, backbone.norm(x), num_prompts, output)


def reference_features(
    backbone, images: torch.Tensor, embeddings: torch.Tensor, *, location: str = "prepend", output: str = "cls",
    first: int = 0, last: int = 0,
) -> torch.Tensor:
    """Pre-head features of VPT's location and output ablations, from the paper and timm's pieces alone.

    `embeddings` is the raw prompt tensor: `(blocks, p, D)` tokens for prepend and add,
    `(1, p, C * ph * pw)` pixel patches for prepend-pixel, `(1, H, W)` an input channel for
    concat-channel. Prompted blocks are `first..last` (0-based); outputs: cls (timm's token
    pool), image-pool, prompt-pool, global-pool (prompts and patches).
    """
    proj, patch_norm = backbone.patch_embed.proj, backbone.patch_embed.norm
    if location == "concat-channel":
        # A fourth input channel, convolved with the mean of the RGB kernels.
        weight = torch.cat([proj.weight, proj.weight.mean(dim=1, keepdim=True)], dim=1)
        channel = embeddings.unsqueeze(0).expand(images.shape[0], -1, -1, -1)
        grid = F.conv2d(torch.cat([images, channel], dim=1), weight, proj.bias, stride=proj.stride)
        x = patch_norm(grid.flatten(2).transpose(1, 2))
    else:
        x = backbone.patch_embed(images)
    x = backbone.norm_pre(backbone._pos_embed(x))
    batch, prefix, inserted = x.shape[0], backbone.num_prefix_tokens, 0
    if location == "prepend-pixel":
        # Each pixel patch is embedded like an image patch: a linear map by the conv kernel, no position.
        tokens = patch_norm(embeddings[0] @ proj.weight.flatten(1).T + proj.bias)
        x = torch.cat([x[:, :prefix], tokens.expand(batch, -1, -1), x[:, prefix:]], dim=1)
        inserted = tokens.shape[0]
    for i, block in enumerate(backbone.blocks):
        if first <= i <= last and location == "add":
            x = torch.cat([x[:, :prefix], x[:, prefix:] + embeddings[i - first]], dim=1)
        elif first <= i <= last and location == "prepend":
            current = embeddings[i - first].expand(batch, -1, -1)
            x = torch.cat([x[:, :prefix], current, x[:, prefix + inserted:]], dim=1)
            inserted = current.shape[1]
        x = block(x)
    x = backbone.norm(x)
    pooled = {
        "cls": x[:, 0],
        "image-pool": x[:, prefix + inserted:].mean(dim=1),
        "prompt-pool": x[:, prefix:prefix + inserted].mean(dim=1) if inserted else None,
        "global-pool": x[:, prefix:].mean(dim=1),
    }[output]
    return backbone.fc_norm(pooled)
