"""Segmentation training parts: the poly schedule, the head lr multiplier and the pixel loss, against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vptune
from vptune.engine.config import TrainConfig
from vptune.engine.distributed import Dist, sync_batch_norm
from vptune.engine.optim import apply_schedule, build_optimizer, lr_at, parameter_groups
from vptune.engine.resolve import with_task_defaults
from vptune.errors import VptuneError
from vptune.segmentation.loss import pixel_cross_entropy, segmentation_loss
from vptune.tasks import get_task_type

from conftest import tiny_vit


def test_poly_follows_mmengine_polylr_recursion():
    # mmengine's PolyLR steps lr_t = (lr_{t-1} - eta_min) * (1 - 1 / (T - t + 1))^power + eta_min.
    base, eta_min, total, power = 0.01, 1e-4, 50, 0.9
    lr = base
    for step in range(total + 1):
        assert lr_at(step, total, 0, base, schedule="poly", power=power, min_lr=eta_min) == pytest.approx(lr, rel=1e-9)
        if step < total:
            lr = (lr - eta_min) * (1 - 1 / (total - step)) ** power + eta_min
    assert lr_at(25, total, 0, base, schedule="poly", power=power, min_lr=eta_min) == pytest.approx(
        eta_min + (base - eta_min) * 0.5**0.9)


def test_poly_after_warm_up_and_cosine_unchanged():
    assert lr_at(0, 110, 10, 1.0, schedule="poly") == pytest.approx(0.1)
    assert lr_at(10, 110, 10, 1.0, schedule="poly") == 1.0
    assert lr_at(60, 110, 10, 1.0, schedule="poly", power=1.0) == pytest.approx(0.5)
    assert lr_at(60, 110, 10, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def seg_model():
    return vptune.create(tiny_vit(), "vpt-deep", 4, num_prompts=2, head="setr-pup", head_options={"channels": 8})


def test_head_groups_train_at_the_multiplier_with_one_lr_floor():
    model = seg_model()
    config = TrainConfig(data="d", task="t", optimizer="sgd", lr=0.001, weight_decay=0.0, schedule="poly",
                         min_lr=1e-4, head_lr_multiplier=10.0, warmup_epochs=0)
    optimizer = build_optimizer(model, config)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        in_head = {names[id(p)].startswith("head.") for p in group["params"]}
        assert len(in_head) <= 1
        assert group["lr_scale"] == (10.0 if in_head == {True} else 1.0)
    counted = sum(len(g["params"]) for g in optimizer.param_groups)
    assert counted == len(model.trainable_parameters())
    base = apply_schedule(optimizer, config, 30, 100, 0)
    factor = 0.7**0.9
    assert base == pytest.approx(1e-4 + (0.001 - 1e-4) * factor)
    for group in optimizer.param_groups:
        expected = 1e-4 + (0.001 * group["lr_scale"] - 1e-4) * factor
        assert group["lr"] == pytest.approx(expected)


def test_segmentation_weights_decay_and_norms_do_not():
    model = seg_model()
    decay, no_decay = parameter_groups(model, 0.05, False)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "head.decode.stages.0.0.weight" in decayed and "head.decode.classifier.weight" in decayed
    assert not any(".norm." in n or ".stages.0.1." in n or n.endswith("bias") or "prompt" in n for n in decayed)
    assert {names[id(p)] for p in no_decay["params"]} >= {"head.decode.norm.weight", "prompt.embeddings"}


def test_schedule_fields_are_checked():
    with pytest.raises(VptuneError, match="schedule 'step'"):
        TrainConfig(data="d", task="t", schedule="step").validate()
    with pytest.raises(VptuneError, match="head-lr-multiplier"):
        TrainConfig(data="d", task="t", head_lr_multiplier=0).validate()


def reference_ce(logits: np.ndarray, labels: np.ndarray, ignore: int, non_ignored: bool) -> float:
    """Per-pixel -log softmax of the true class, summed and divided by all pixels (or the labelled ones)."""
    total, count = 0.0, 0
    for b, y, x in np.ndindex(labels.shape):
        label = labels[b, y, x]
        if label == ignore:
            continue
        z = logits[b, :, y, x].astype(np.float64)
        total += np.log(np.exp(z - z.max()).sum()) + z.max() - z[label]
        count += 1
    return total / (count if non_ignored else labels.size)


@pytest.mark.parametrize("non_ignored", [False, True])
def test_pixel_loss_and_aux_weighting(non_ignored):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, 6, generator=gen)
    aux = [torch.randn(2, 5, 4, 6, generator=gen) for _ in range(3)]
    labels = torch.randint(0, 5, (2, 4, 6), generator=gen)
    labels[0, :2] = 255
    ce = [reference_ce(t.numpy(), labels.numpy(), 255, non_ignored) for t in [logits, *aux]]
    assert float(pixel_cross_entropy(logits, labels, avg_non_ignore=non_ignored)) == pytest.approx(ce[0], rel=1e-5)
    loss = segmentation_loss(logits, labels, aux, avg_non_ignore=non_ignored)
    assert float(loss) == pytest.approx(ce[0] + 0.4 * sum(ce[1:]), rel=1e-5)


def test_pixel_loss_resizes_logits_to_the_labels():
    logits = torch.randn(1, 3, 2, 2)
    labels = torch.randint(0, 3, (1, 8, 8))
    resized = torch.nn.functional.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.equal(pixel_cross_entropy(logits, labels), pixel_cross_entropy(resized, labels))


def test_segmentation_recipe_fills_only_unset_fields():
    segmentation = get_task_type("segmentation")
    config = with_task_defaults(TrainConfig(data="d", task="t"), segmentation, "ade20k")
    assert (config.optimizer, config.lr, config.momentum, config.weight_decay) == ("sgd", 1e-3, 0.9, 0.0)
    assert (config.warmup_epochs, config.schedule, config.poly_power) == (0.0, "poly", 0.9)
    assert (config.min_lr, config.head_lr_multiplier) == (pytest.approx(1e-4), 10.0)
    given = TrainConfig(data="d", task="t", optimizer="adamw", lr=0.02, warmup_epochs=2, head_lr_multiplier=1.0)
    given = with_task_defaults(given, segmentation, "ade20k")
    assert (given.optimizer, given.lr, given.warmup_epochs, given.head_lr_multiplier) == ("adamw", 0.02, 2, 1.0)
    assert (given.schedule, given.weight_decay, given.min_lr) == ("poly", 0.0, pytest.approx(0.002))
    classification = with_task_defaults(TrainConfig(data="d", task="t"), get_task_type("classification"), "vtab")
    assert (classification.optimizer, classification.lr, classification.weight_decay) == ("adamw", 5e-3, 1e-4)
    assert (classification.warmup_epochs, classification.schedule, classification.min_lr) == (1.0, "cosine", 0.0)
    assert classification.head_lr_multiplier == 1.0


def test_setr_batch_norm_syncs_only_across_cuda_ranks():
    model = seg_model()
    before = dict(model.head.named_parameters())
    two_ranks = Dist(rank=0, world_size=2)
    assert sync_batch_norm(model.head, two_ranks, torch.device("cpu")) is model.head
    assert sync_batch_norm(model.head, Dist(), torch.device("cuda")) is model.head
    synced = sync_batch_norm(model.head, two_ranks, torch.device("cuda"))
    norms = [m for m in synced.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    assert all(p is before[name] for name, p in synced.named_parameters())
