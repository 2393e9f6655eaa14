"""Optimizer with honest weight decay, and a cosine schedule whose warm-up never sits at lr 0."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float, decay_tuned_tokens: bool) -> list[dict]:
    """Trainable parameters split into decayed weights and undecayed biases, norms and prompts."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_token = "prompt" in name or "token" in name or "pos_embed" in name
        if param.ndim <= 1 or (is_token and not decay_tuned_tokens):
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


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
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
