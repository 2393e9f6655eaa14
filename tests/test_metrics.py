"""Top-k accuracy and ROC-AUC against scikit-learn, on known scores with ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, top_k_accuracy_score

from vptune.tasks.classification import classification_metrics


def test_top1_and_top5_match_scikit_learn_with_tied_scores():
    rng = np.random.default_rng(0)
    # Integer-valued logits in a small range: many ties, within rows and across the top-5 boundary.
    logits = torch.tensor(rng.integers(0, 4, (200, 8)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 8, 200))
    metrics = classification_metrics(logits, labels)
    for k in (1, 5):
        expected = top_k_accuracy_score(labels.numpy(), logits.numpy(), k=k, labels=list(range(8)))
        assert metrics[f"top{k}"] == pytest.approx(expected, abs=1e-12), k
    assert metrics["n"] == 200 and "auc" not in metrics


def test_a_tie_on_the_top5_boundary_ranks_the_higher_class_first():
    logits = torch.tensor([[5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]] * 3)
    # Classes 1..6 tie for places 2..6: the higher indices 6, 5, 4, 3 take them, leaving out 1 and 2.
    metrics = classification_metrics(logits, torch.tensor([6, 5, 2]))
    assert metrics["top5"] == pytest.approx(2 / 3) and metrics["top1"] == 0.0


def test_auc_is_scikit_learns_on_class_1_probabilities_with_ties():
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.5], [0.0, 0.5], [2.0, 0.0]])
    labels = torch.tensor([1, 0, 0, 1, 0, 1])
    scores = np.exp(logits.numpy()[:, 1]) / np.exp(logits.numpy()).sum(1)
    metrics = classification_metrics(logits, labels)
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels.numpy(), scores), abs=1e-12)
    # By hand: the share of (positive, negative) pairs the positive wins, a tie counting half.
    positives, negatives = scores[labels.numpy() == 1], scores[labels.numpy() == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    assert metrics["auc"] == pytest.approx(wins / 9, abs=1e-12)
    assert "top5" not in metrics
