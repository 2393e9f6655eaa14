"""Classification metrics: top-1, top-5 where classes > 5, ROC-AUC for binary tasks."""

from __future__ import annotations

import torch


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Metrics of a whole split from its logits `(N, C)` and labels `(N,)`.

    top-k: the label is among the k highest logits, tied logits ranking the higher class
    index first. auc: ROC-AUC of the softmax probability of class 1 (tied scores count half).
    """
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
    # Tied scores rank the higher class index first, as scikit-learn's top_k_accuracy_score does.
    top = logits.argsort(dim=1, stable=True).flip(1)[:, :k]
    return float((top == labels[:, None]).any(dim=1).double().mean())
