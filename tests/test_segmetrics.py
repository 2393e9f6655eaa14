"""mIoU, mAcc and aAcc against a straightforward per-class numpy computation over the whole split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vptune.segmentation.metrics import intersect_and_union
from vptune.tasks.segmentation import SegmentationMeter

IGNORE = 255


def reference(preds: list[np.ndarray], labels: list[np.ndarray], num_classes: int) -> dict:
    """Pixel sets of the whole split, class by class, by plain counting."""
    pred = np.concatenate([p.ravel() for p in preds])
    label = np.concatenate([l.ravel() for l in labels])
    keep = label != IGNORE
    pred, label = pred[keep], label[keep]
    ious, accs = [], []
    for c in range(num_classes):
        in_pred, in_label = pred == c, label == c
        inter, union = np.sum(in_pred & in_label), np.sum(in_pred | in_label)
        ious.append(inter / union if union else math.nan)
        accs.append(inter / in_label.sum() if in_label.sum() else math.nan)
    return {
        "aAcc": np.sum(pred == label) / len(label),
        "mIoU": np.nanmean(ious), "mAcc": np.nanmean(accs), "IoU": ious, "Acc": accs,
    }


def assert_matches(got: dict, want: dict) -> None:
    for key in ("aAcc", "mIoU", "mAcc"):
        assert got[key] == pytest.approx(want[key], abs=1e-12)
    for key in ("IoU", "Acc"):
        np.testing.assert_allclose(got[key], want[key], atol=1e-12)  # NaN where NaN


def test_split_metrics_match_plain_counting():
    rng = np.random.default_rng(0)
    num_classes = 6
    preds, labels = [], []
    for size in [(7, 9), (5, 5), (8, 3)]:
        label = rng.integers(0, 3, size)       # classes 0-2 in the labels
        label[rng.random(size) < 0.2] = IGNORE  # some ignored pixels
        pred = rng.integers(0, 4, size)         # class 3 only predicted: IoU 0; classes 4, 5 absent: NaN
        pred[label == IGNORE] = 5               # predictions on ignored pixels never count
        preds.append(pred)
        labels.append(label)
    meter = SegmentationMeter(num_classes)
    for pred, label in zip(preds, labels):  # image by image, as a loader with batch size 1 gives them
        meter.process(torch.from_numpy(pred)[None], torch.from_numpy(label)[None])
    got, want = meter.compute(meter.results()), reference(preds, labels, num_classes)
    assert_matches(got, want)
    assert got["n"] == 3
    assert got["IoU"][3] == 0.0 and math.isnan(got["Acc"][3])
    assert math.isnan(got["IoU"][4]) and math.isnan(got["IoU"][5])


def test_batches_sum_like_single_images():
    gen = torch.Generator().manual_seed(1)
    pred = torch.randint(0, 5, (4, 6, 6), generator=gen)
    label = torch.randint(0, 5, (4, 6, 6), generator=gen)
    label[:, 0] = IGNORE
    batched = SegmentationMeter(5)
    batched.process(pred[:3], label[:3])
    batched.process(pred[3:], label[3:])
    per_image = torch.stack([torch.stack(intersect_and_union(p, l, 5)) for p, l in zip(pred, label)]).sum(0)
    assert torch.equal(batched.results()["areas"].sum(0), per_image)
    assert_matches(batched.compute(batched.results()), reference(list(pred.numpy()), list(label.numpy()), 5))


def test_hand_counted_example():
    pred = torch.tensor([[0, 0, 1], [1, 2, 2]])
    label = torch.tensor([[0, 1, 1], [1, 255, 0]])
    inter, union, area_pred, area_label = intersect_and_union(pred, label, 4)
    assert inter.tolist() == [1, 2, 0, 0]
    assert area_pred.tolist() == [2, 2, 1, 0]  # the prediction on the ignored pixel is dropped
    assert area_label.tolist() == [2, 3, 0, 0]
    assert union.tolist() == [3, 3, 1, 0]
    meter = SegmentationMeter(4)
    meter.process(pred[None], label[None])
    metrics = meter.compute(meter.results())
    assert metrics["aAcc"] == pytest.approx(3 / 5)
    assert metrics["mIoU"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert metrics["mAcc"] == pytest.approx((1 / 2 + 2 / 3) / 2)
