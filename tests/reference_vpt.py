"""An independent, literal implementation of the paper's prompted forward, for checking."""

from __future__ import annotations

import torch


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
