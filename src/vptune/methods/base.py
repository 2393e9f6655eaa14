"""The interface every tuning method implements, and the name registry."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..errors import MethodError
from ..model import TunedModel
from ..option_fields import fill_options, typed_options
from ..registry import Registry

METHODS: Registry["Method"] = Registry("method", MethodError)
register = METHODS.register
_NUMBERED = re.compile(r"^(?P<base>[a-z]+)-(?P<k>\d+)$")

# Learning rates the default sweep grid tries: methods whose updates are new tensors (prompts, heads,
# a side network) take larger steps than methods that move pretrained weights (README "Sweeps").
NEW_TENSOR_LRS = (1e-3, 5e-3, 1e-2)
PRETRAINED_LRS = (1e-4, 5e-4, 1e-3)


@dataclass(frozen=True)
class SharedPart:
    """What one task adds to a backbone forward it shares with other tasks' samples.

    `prompts` are what its samples take into the backbone's batched forward (see the family's
    `batched_forward`; for ViTs `prompts.vit.SharedPrompts`), None for none; `head` maps the
    task's images and their shared pre-head features to its logits.
    """

    prompts: Any | None
    head: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Method(ABC):
    """A tuning method: its options, and which tensors it adds to and trains in a TunedModel.

    Subclasses set `name`, an `Options` dataclass (limits declared in its fields' metadata,
    see option_fields) and implement `attach`. A method named with `-k` (e.g. `partial-k`)
    is called as `partial-4`; `k` fills the option `k`.

    What a method is, it declares as class attributes: `default_lr`, the AdamW peak learning
    rate when none is given (README "Default learning rates" has the runs behind the values);
    `lr_grid`, the learning rates the default sweep grid tries; `changes_backbone`, whether it
    trains or adds tensors inside the backbone (such a task cannot share a frozen backbone).
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    summary: ClassVar[str] = ""
    default_lr: ClassVar[float] = 5e-3
    lr_grid: ClassVar[tuple[float, ...]] = NEW_TENSOR_LRS
    changes_backbone: ClassVar[bool] = False

    def parse_options(self, given: dict[str, Any]) -> Any:
        """Options dataclass from keyword options; unknown names, wrong types and bad values raise MethodError."""
        options = fill_options(self.Options, given, "method", self.name, MethodError)
        self.validate(options)
        return options

    def typed_options(self, given: dict[str, Any], *, text: bool) -> dict[str, Any]:
        """`given` checked against the Options field types; `text`: values read from YAML or flags are parsed."""
        return typed_options(self.Options, given, "method", self.name, MethodError, text=text)

    def validate(self, options: Any) -> None:
        """Raise MethodError for option values that cannot work together (single values are checked by their limits)."""

    def shared_part(self, model: TunedModel) -> SharedPart | None:
        """What a task of this method contributes to a backbone forward shared with other tasks, or None when
        it needs a forward of its own.

        Here: a task that leaves the backbone's tensors alone, adds no prompts and reads the
        backbone's own pooling takes the shared features as they are into its side network (if
        any) and head. Prompt methods override this to hand over their per-sample prompts.
        """
        if self.changes_backbone or model.prompt is not None or model.output != "cls":
            return None
        return SharedPart(None, model.classify)

    @abstractmethod
    def attach(self, model: TunedModel, options: Any) -> None:
        """Add this method's modules to `model` and mark exactly its tensors trainable."""

    def stages(self, model: TunedModel) -> int:
        """Training stages a run of `model` goes through, each `epochs` long (1 unless the method adds some)."""
        return 1

    def start_stage(self, model: TunedModel, stage: int, initial: dict[str, torch.Tensor],
                    losses: Callable[[], Iterator[torch.Tensor]]) -> dict[str, Any]:
        """Prepare `model`, trained through stage `stage - 1` (its best epoch loaded), for stage `stage` (2, ...).

        `initial` holds its tuned tensors before training; `losses()` yields the training loss of
        each batch of one pass over the training split, the model in eval mode. The trainer gives
        the stage a fresh optimizer and schedule. Returns what it changed, recorded in the run.
        """
        raise NotImplementedError(f"method '{self.name}' trains in one stage")


def available_methods() -> list[str]:
    """Registered method names (numbered ones as `name-k`)."""
    return METHODS.names()


def options_from_text(method: str, given: dict[str, Any]) -> dict[str, Any]:
    """Options of `method` read from YAML or `--option KEY=VALUE`, typed like its Options fields."""
    return get_method(method)[0].typed_options(given, text=True)


def get_method(name: str) -> tuple[Method, dict[str, Any]]:
    """The method for `name` and the options its name implies (`partial-4` -> k=4)."""
    if name in METHODS:
        return METHODS.get(name), {}
    numbered = _NUMBERED.match(name)
    if numbered and f"{numbered['base']}-k" in METHODS:
        return METHODS.get(f"{numbered['base']}-k"), {"k": int(numbered["k"])}
    raise METHODS.unknown(name)
