"""Optimizer with honest weight decay, and a cosine schedule whose warm-up never sits at lr 0."""

from __future__ import annotations

import math

import torch

from ..model import TunedModel
from .config import TrainConfig


def parameter_groups(model: TunedModel, weight_decay: float, decay_tuned_tokens: bool) -> list[dict]:
    """Trainable parameters split into decayed weights and undecayed ones.

    Never decayed: tensors with ndim <= 1 (biases, norms, scales, gates). Not decayed unless
    `decay_tuned_tokens`: what the model's modules declare in `no_weight_decay()` (prompts,
    position embeddings, class tokens).
    """
    declared = model.no_weight_decay()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or (name in declared and not decay_tuned_tokens):
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def effective_lr(config: TrainConfig) -> float:
    """The base learning rate, scaled by batch/256 when asked (the paper's convention)."""
    return config.lr * config.batch_size / 256 if config.scale_lr else config.lr


def build_optimizer(model: TunedModel, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay, config.decay_tuned_tokens)
    lr = effective_lr(config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up from base/warmup (never 0) to base, then cosine decay to 0 at the end."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
