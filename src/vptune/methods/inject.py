"""Modules a method adds inside the backbone, run on the output of one of its modules or beside part of a block."""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

from ..errors import MethodError


def add_output_module(host: nn.Module, name: str, module: nn.Module) -> None:
    """Register `module` as `host.<name>` and apply it to `host`'s output on every call.

    The added tensors get stable state-dict names (`...mlp.adapter.down.weight`), and the
    backbone's own modules and names stay as timm made them.
    """
    _register(host, name, module)
    host.register_forward_hook(partial(_apply_added, name))


def add_branch_module(owner: nn.Module, name: str, module: nn.Module, *, reads: nn.Module, joins: nn.Module) -> None:
    """Register `module` as `owner.<name>`, a branch beside part of `owner`'s forward: it runs on the
    input of `reads`, and its output is added to the output of `joins`.

    `reads` must run before `joins` in every forward of `owner` (a pre-norm block's `norm2`
    and the end of its MLP branch), and each once. The branch output waits on `module`
    between the two calls, so one model runs one forward at a time (as torch modules do).
    """
    _register(owner, name, module)
    reads.register_forward_pre_hook(partial(_start_branch, module))
    joins.register_forward_hook(partial(_join_branch, module, name))


def _register(host: nn.Module, name: str, module: nn.Module) -> None:
    if hasattr(host, name):
        raise MethodError(
            f"the backbone already holds '{name}' modules from another model; give each model "
            "its own backbone (copy.deepcopy it)"
        )
    host.add_module(name, module)


# Module-level functions (not closures), so models with these hooks deep-copy and pickle.
def _apply_added(name: str, host: nn.Module, inputs: Any, output: Any) -> Any:
    return getattr(host, name)(output)


def _start_branch(module: nn.Module, host: nn.Module, inputs: Any) -> None:
    module.waiting = module(inputs[0])


def _join_branch(module: nn.Module, name: str, host: nn.Module, inputs: Any, output: Any) -> Any:
    waiting = getattr(module, "waiting", None)
    if waiting is None:
        raise MethodError(
            f"the '{name}' branch was not started before its block's MLP branch ended; "
            "it needs pre-norm blocks (norm1, attn, norm2, mlp), as timm's ViT and Swin have"
        )
    module.waiting = None
    return output + waiting
