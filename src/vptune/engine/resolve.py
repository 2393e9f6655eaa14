"""Resolve, then run: every setting a run leaves open is decided once, before the run starts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import VptuneError
from ..heads import get_head
from ..methods import get_method
from ..tasks import TaskType, task_type_of
from .config import TrainConfig


def resolve_config(config: TrainConfig) -> TrainConfig:
    """A copy of `config` with every setting it leaves open decided; `config` itself is not changed.

    Decided: the absolute data root, then from the task folder's task type and layout
    (`tasks.task_type_of`) what `with_task_defaults` fills. Settings already given are kept,
    so resolving a resolved config changes nothing. Raises VptuneError for settings no run can
    use or that do not fit the data.
    """
    config.validate()
    kind, layout = task_type_of(config.data, config.task)
    # Recorded absolute, so that evaluating the run later reads this data from any folder.
    absolute = dataclasses.replace(config, data=str(Path(config.data).resolve()))
    resolved = with_task_defaults(absolute, kind, layout)
    resolved.validate()
    return resolved


def with_task_defaults(config: TrainConfig, kind: TaskType, layout: str) -> TrainConfig:
    """`config` with the settings it leaves open taken from task type `kind` and data layout `layout`: the
    layout's train and validation splits and protocol, the task type's default head (a head given must
    be one of its kind) and optimizer recipe, `lr` (`resolved_lr`) and `min_lr`."""
    train_split, eval_split = kind.default_splits(layout)
    protocol = config.protocol or kind.default_protocol(layout)
    if protocol not in kind.protocols:
        raise VptuneError(f"protocol '{protocol}' does not fit the {layout} layout of task '{config.task}' "
                          f"({kind.name} data takes {', '.join(kind.protocols)}); leave --protocol unset")
    head = config.head or kind.default_head
    if get_head(head).task_type != kind.heads:
        raise VptuneError(f"head '{head}' is a {get_head(head).task_type} head but task '{config.task}' holds "
                          f"{kind.name} data ({layout}); pick another --head")
    recipe = {name: value if getattr(config, name) is None else getattr(config, name)
              for name, value in kind.recipe.items()}
    lr = resolved_lr(config.lr, config.method, kind)
    return dataclasses.replace(
        config,
        train_split=config.train_split or train_split,
        eval_split=eval_split if config.eval_split is None else config.eval_split,
        protocol=protocol,
        head=head,
        **recipe,
        lr=lr,
        min_lr=kind.min_lr(lr) if config.min_lr is None else config.min_lr,
    )


def resolved_lr(lr: float | None, method: str, kind: TaskType) -> float:
    """`lr` if given, else the task type's recipe lr, else the method's `default_lr`."""
    if lr is not None:
        return lr
    return kind.recipe_lr if kind.recipe_lr is not None else get_method(method)[0].default_lr
