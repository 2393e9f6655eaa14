"""Classification metrics: top-1, top-5 where classes > 5, ROC-AUC for binary tasks."""

from __future__ import annotations

import torch


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Metrics of a whole split from its logits `(N, C)` and labels `(N,)`."""
    num_classes = logits.shape[1]
    metrics = {"n": int(labels.numel()), "top1": _topk(logits, labels, 1)}
    if num_classes > 5:
        metrics["top5"] = _topk(logits, labels, 5)
    if num_classes == 2 and labels.unique().numel() == 2:
        from sklearn.metrics import roc_auc_score

        scores = torch.softmax(logits.float(), dim=1)[:, 1]
        metrics["auc"] = float(roc_auc_score(labels.numpy(), scores.numpy()))
    return metrics


def _topk(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    top = logits.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(dim=1).float().mean())
