"""Modules a method adds inside the backbone, run on the output of one of its modules."""

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
    if hasattr(host, name):
        raise MethodError(
            f"the backbone already holds '{name}' modules from another model; give each model "
            "its own backbone (copy.deepcopy it)"
        )
    host.add_module(name, module)
    host.register_forward_hook(partial(_apply_added, name))


def _apply_added(name: str, host: nn.Module, inputs: Any, output: Any) -> Any:
    # A module-level function (not a closure) so models with these hooks deep-copy and pickle.
    return getattr(host, name)(output)
