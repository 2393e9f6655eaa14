"""E2VPT's prompt pruning and rewinding, the second training stage of a run with `prune` set.

After the first stage the visual prompt tokens are scored by the model's sensitivity to a
mask variable on each, `S_k = E_x |dL(x) / d rho_k|` at `rho = 1` (one pass over the
training split, backbone and prompts in eval mode); the lowest-scoring `prune_fraction` of
the tokens is pruned (at least one is kept). With `prune=segment` each kept token is then
split into `segments` equal parts, scored the same way with the token mask in place, and
the lowest `prune_fraction` of each token's segments are pruned (the paper's cascade). The
masks hold in every block. Rewinding: every tuned tensor goes back to its value before
training (the lottery ticket's weights), and the second stage trains them again under the
masks with a fresh optimizer and schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..model import TunedModel
from ..prompts.e2vpt import E2vptPrompt
from ..prompts.swin_e2vpt import E2vptSwinPrompt


def prune_and_rewind(model: TunedModel, initial: dict[str, torch.Tensor],
                     losses: Callable[[], Iterator[torch.Tensor]]) -> dict[str, Any]:
    """Score and prune `model`'s visual prompts, then rewind its tuned tensors to `initial` (masks kept).

    `losses()` yields the training loss of each batch of one pass over the training split.
    Returns the record of what was pruned, with the importance scores.
    """
    options = model.config["options"]
    prompt: E2vptPrompt | E2vptSwinPrompt = model.prompt
    num_tokens, segments = prompt.keep.shape
    token_scores, _ = importance(prompt, losses)
    keep = torch.ones_like(prompt.keep)
    pruned_tokens = lowest(token_scores, options["prune_fraction"])
    keep[pruned_tokens] = 0
    prompt.keep.copy_(keep)
    record: dict[str, Any] = {"pruned": options["prune"], "token_importance": token_scores.tolist(),
                              "pruned_tokens": pruned_tokens.tolist()}
    if options["prune"] == "segment":
        _, segment_scores = importance(prompt, losses)
        kept = sorted(set(range(num_tokens)) - set(pruned_tokens.tolist()))
        pruned_segments = {t: lowest(segment_scores[t], options["prune_fraction"]).tolist() for t in kept}
        for token, parts in pruned_segments.items():
            keep[token, parts] = 0
        record.update(segment_importance=segment_scores.tolist(),
                      pruned_segments={str(t): parts for t, parts in pruned_segments.items()})
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in initial.items() if k != "prompt.keep"}, strict=False)
        prompt.keep.copy_(keep)
    record["kept_values_per_block"] = prompt.kept_values_per_block()
    return record


def importance(
    prompt: E2vptPrompt | E2vptSwinPrompt, losses: Callable[[], Iterator[torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean |dL / d rho| over the batches `losses()` yields, for token gates `(M,)` and segment gates `(M, R)`."""
    num_tokens, segments = prompt.keep.shape
    device = prompt.keep.device
    prompt.token_gate = torch.ones(num_tokens, device=device, requires_grad=True)
    prompt.segment_gate = torch.ones(num_tokens, segments, device=device, requires_grad=True)
    token_sum, segment_sum, batches = torch.zeros(num_tokens, device=device), torch.zeros_like(prompt.keep), 0
    try:
        for loss in losses():
            token_grad, segment_grad = torch.autograd.grad(loss, [prompt.token_gate, prompt.segment_gate])
            token_sum += token_grad.abs()
            segment_sum += segment_grad.abs()
            batches += 1
    finally:
        prompt.token_gate = prompt.segment_gate = None
    return (token_sum / max(batches, 1)).cpu(), (segment_sum / max(batches, 1)).cpu()


def lowest(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the `fraction` lowest scores (rounded down, at least one index kept), in ascending index order."""
    count = min(int(len(scores) * fraction), len(scores) - 1)
    return torch.sort(torch.argsort(scores, stable=True)[:count]).values
