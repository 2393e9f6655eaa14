"""Optimizer, schedule, gradient clipping and weight-decay groups against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import vptune
from vptune.engine import optim, trainer
from vptune.engine.config import TrainConfig
from vptune.engine.resolve import with_task_defaults
from vptune.tasks import get_task_type
from vptune.methods import available_methods

from conftest import tiny_vit, tiny_train_config

SAMPLE_OPTIONS = {"partial-k": {"k": 1}, "mlp-k": {"k": 2}}


def test_warm_up_climbs_linearly_from_base_over_warmup_then_cosine_falls_to_zero():
    base, total, warmup = 0.1, 10, 4
    values = [optim.lr_at(step, total, warmup, base) for step in range(total)]
    # Warm-up: base * (step + 1) / warmup; then base * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2.
    half, root3 = 0.05, math.sqrt(3)
    cosine = [half * 2, half * (1 + root3 / 2), half * 1.5, half, half * 0.5, half * (1 - root3 / 2)]
    expected = [0.025, 0.05, 0.075, 0.1] + cosine  # cos(k pi / 6) for k = 0..5
    assert values == pytest.approx(expected, abs=1e-9)
    assert optim.lr_at(0, 10, 0, 0.1) == pytest.approx(0.1)  # no warm-up: cosine from the base


def classification(**values) -> TrainConfig:
    """A config with the classification recipe in the fields `values` leave unset, as a run fills them."""
    return with_task_defaults(TrainConfig(**values), get_task_type("classification"), "vtab")


def test_scale_lr_multiplies_by_batch_over_256():
    assert optim.effective_lr(TrainConfig(lr=0.1, batch_size=64, scale_lr=True)) == pytest.approx(0.025)
    assert optim.effective_lr(TrainConfig(lr=0.1, batch_size=64, scale_lr=False)) == pytest.approx(0.1)
    model = vptune.create(tiny_vit(), "linear", 3)
    groups = optim.build_optimizer(model, classification(lr=0.2, batch_size=512, scale_lr=True)).param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.4, 0.4])


def test_sgd_momentum_and_weight_decay_match_two_hand_computed_steps():
    model = vptune.create(tiny_vit(), "linear", 2)
    config = classification(optimizer="sgd", lr=0.5, momentum=0.9, weight_decay=0.1)
    optimizer = optim.build_optimizer(model, config)
    weight, bias = model.head.weight, model.head.bias
    w0, b0 = weight.detach().clone(), bias.detach().clone()
    g1, g2 = torch.full_like(w0, 1.0), torch.full_like(w0, -2.0)
    h1, h2 = torch.full_like(b0, 3.0), torch.full_like(b0, 1.0)
    for gw, gb in ((g1, h1), (g2, h2)):
        weight.grad, bias.grad = gw.clone(), gb.clone()
        optimizer.step()
    # Weight (decayed): d = g + wd * w; v1 = d1, v2 = m * v1 + d2; w <- w - lr * v.
    v1 = g1 + 0.1 * w0
    w1 = w0 - 0.5 * v1
    v2 = 0.9 * v1 + g2 + 0.1 * w1
    torch.testing.assert_close(weight.detach(), w1 - 0.5 * v2, atol=1e-6, rtol=0)
    # Bias (not decayed): v1 = 3, v2 = 0.9 * 3 + 1 = 3.7; b <- b - 0.5 * (3 + 3.7).
    torch.testing.assert_close(bias.detach(), b0 - 0.5 * 6.7, atol=1e-6, rtol=0)


def expected_decayed(model, method: str) -> set[str]:
    """Written from the method's description, not from the declarations the code makes."""
    undecayed_backbone = {"backbone.pos_embed", "backbone.cls_token"}  # timm's VisionTransformer.no_weight_decay
    return {
        name for name, p in model.named_parameters()
        # E2VPT's key-value prompts are prompts too.
        if p.requires_grad and p.ndim >= 2 and not name.startswith(("prompt.embeddings", "prompt.key_value"))
        and name not in undecayed_backbone
    }


# Decayed tensors each method must have (a check on the rule above, per method).
MUST_DECAY = {
    "full": {"backbone.blocks.0.attn.qkv.weight", "backbone.patch_embed.proj.weight", "head.weight"},
    "adapter": {"backbone.blocks.0.mlp.adapter.down.weight"},
    "adapter-plus": {"backbone.blocks.0.adapter_plus.down.weight", "backbone.blocks.0.adapter_plus.up.weight"},
    "adaptformer": {"backbone.blocks.0.adaptformer.down.weight", "backbone.blocks.0.adaptformer.up.weight"},
    "lora": {"backbone.blocks.0.attn.qkv.lora_A.default.weight"},
    "sidetune": {"side.net.0.weight"},
}


@pytest.mark.parametrize("method", available_methods())
def test_decayed_tensors_are_the_weights_not_prompts_tokens_biases_norms_or_gates(method):
    model = vptune.create(tiny_vit(), method, 3, **SAMPLE_OPTIONS.get(method, {}))
    decay, no_decay = optim.parameter_groups(model, 0.1, decay_tuned_tokens=False)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, undecayed = {names[id(p)] for p in decay["params"]}, {names[id(p)] for p in no_decay["params"]}
    assert decayed == expected_decayed(model, method)
    assert decayed | undecayed == set(model.trainable_parameters())
    head_weights = {n for n in model.trainable_parameters() if n.startswith("head.") and n.endswith(".weight")}
    assert head_weights and head_weights <= decayed
    assert {n for n in model.trainable_parameters() if n.endswith(".bias")} <= undecayed
    assert MUST_DECAY.get(method, set()) <= decayed
    if method.startswith(("vpt", "vfpt", "e2vpt")):
        assert "prompt.embeddings" in undecayed
        tokens, _ = optim.parameter_groups(model, 0.1, decay_tuned_tokens=True)
        assert "prompt.embeddings" in {names[id(p)] for p in tokens["params"]}
    if method == "full":
        assert {"backbone.pos_embed", "backbone.cls_token", "backbone.norm.weight"} <= undecayed


def test_grad_clip_caps_the_gradient_norm_at_the_clip_value(small_digits_root, tmp_path, monkeypatch):
    norms: list[float] = []

    def recording(model, config):
        optimizer = optim.build_optimizer(model, config)
        params = list(model.trainable_parameters().values())

        def record(*_):
            norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))))

        optimizer.register_step_pre_hook(record)
        return optimizer

    monkeypatch.setattr(trainer, "build_optimizer", recording)
    trainer.train(tiny_train_config(small_digits_root, tmp_path / "clip", method="linear", epochs=1, grad_clip=1e-3))
    assert len(norms) == 256 // 32
    assert norms == pytest.approx([1e-3] * len(norms), rel=1e-4)
