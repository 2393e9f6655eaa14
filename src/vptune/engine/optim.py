"""Optimizer with honest weight decay and a head learning-rate multiplier; cosine or poly schedules
whose warm-up never sits at lr 0."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..model import TunedModel
from .config import TrainConfig


def parameter_groups(
    model: TunedModel, weight_decay: float, decay_tuned_tokens: bool, head_lr_multiplier: float = 1.0
) -> list[dict]:
    """Trainable parameters split into decayed weights and undecayed ones.

    Never decayed: tensors with ndim <= 1 (biases, norms, scales, gates). Not decayed unless
    `decay_tuned_tokens`: what the model's modules declare in `no_weight_decay()` (prompts,
    position embeddings, class tokens). With `head_lr_multiplier` != 1 the head's parameters
    (names under `head.`) form groups of their own whose `lr_scale` is the multiplier (SETR's
    configs train the decoders at 10x).
    """
    declared = model.no_weight_decay()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = not (param.ndim <= 1 or (name in declared and not decay_tuned_tokens))
        in_head = head_lr_multiplier != 1.0 and name.startswith("head.")
        groups.setdefault((decays, in_head), []).append(param)
    return [
        {
            "params": groups.get((decays, in_head), []),
            "weight_decay": weight_decay if decays else 0.0,
            "lr_scale": head_lr_multiplier if in_head else 1.0,
        }
        for in_head in ((False, True) if head_lr_multiplier != 1.0 else (False,))
        for decays in (True, False)
    ]


def effective_lr(config: TrainConfig) -> float:
    """The base learning rate, scaled by batch/256 when asked (the paper's convention)."""
    return config.lr * config.batch_size / 256 if config.scale_lr else config.lr


def build_optimizer(model: TunedModel, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay, config.decay_tuned_tokens, config.head_lr_multiplier)
    lr = effective_lr(config)
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def lr_at(
    step: int,
    total_steps: int,
    warmup_steps: int,
    base_lr: float,
    *,
    schedule: str = "cosine",
    power: float = 0.9,
    min_lr: float = 0.0,
) -> float:
    """Linear warm-up from base/warmup (never 0) to base, then the decay of `schedule`.

    `cosine` decays to 0 at the end; `poly` is mmsegmentation's PolyLR,
    `min_lr + (base - min_lr) * (1 - progress)^power`, reaching `min_lr` at the end.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "poly":
        return min_lr + (base_lr - min_lr) * (1.0 - progress) ** power
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def apply_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, step: int, total_steps: int, warmup_steps: int
) -> float:
    """Set every group's lr for `step` by the config's schedule and return the base lr.

    A group's schedule starts from the base lr times its `lr_scale` (the head multiplier);
    `min_lr` is the same floor for every group, as mmsegmentation's PolyLR `eta_min`.
    """
    base_lr = effective_lr(config)
    for group in optimizer.param_groups:
        group["lr"] = lr_at(
            step, total_steps, warmup_steps, base_lr * group.get("lr_scale", 1.0),
            schedule=config.schedule, power=config.poly_power, min_lr=config.min_lr,
        )
    return lr_at(step, total_steps, warmup_steps, base_lr,
                 schedule=config.schedule, power=config.poly_power, min_lr=config.min_lr)
