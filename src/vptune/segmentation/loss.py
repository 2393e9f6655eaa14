"""The segmentation training loss: per-pixel cross-entropy plus weighted auxiliary decoder losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .formats import IGNORE_INDEX


def pixel_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = IGNORE_INDEX, avg_non_ignore: bool = False
) -> torch.Tensor:
    """Cross-entropy of logits `(B, K, h, w)` against labels `(B, H, W)`, as mmsegmentation's CrossEntropyLoss.

    Logits of another size are resized bilinearly to the labels first. Pixels labelled
    `ignore_index` add no loss; by default they still count in the mean (mmsegmentation's
    `avg_non_ignore=False`, with which SETR trained); `avg_non_ignore` averages over the
    labelled pixels only.
    """
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    losses = F.cross_entropy(logits.float(), labels.long(), ignore_index=ignore_index, reduction="none")
    if avg_non_ignore:
        return losses.sum() / (labels != ignore_index).sum().clamp(min=1)
    return losses.mean()


def segmentation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    aux_logits: list[torch.Tensor] = (),
    *,
    aux_weight: float = 0.4,
    ignore_index: int = IGNORE_INDEX,
    avg_non_ignore: bool = False,
) -> torch.Tensor:
    """The main decoder's loss plus `aux_weight` times each auxiliary decoder's (SETR: 0.4).

    Pass what `model(images, aux=True)` returns and the head's `aux_weight`.
    """
    loss = pixel_cross_entropy(logits, labels, ignore_index=ignore_index, avg_non_ignore=avg_non_ignore)
    for aux in aux_logits:
        loss = loss + aux_weight * pixel_cross_entropy(
            aux, labels, ignore_index=ignore_index, avg_non_ignore=avg_non_ignore
        )
    return loss
