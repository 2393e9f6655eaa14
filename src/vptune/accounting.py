"""Storage accounting: what a method stores per task, and the paper's "Total params" for T tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import timm
import torch
from safetensors.torch import save as serialize

from .api import create
from .backbones import build_backbone
from .errors import VptuneError
from .persistence import task_file_metadata


@dataclass(frozen=True)
class StorageReport:
    """Parameters and bytes one task adds to a backbone.

    `tuned_params` counts every trainable tensor of a task, its `num_classes` head included
    (`head_params`: all of the head, a segmentation head's training-only auxiliary decoders
    too); `bytes_per_task` is the exact size of the file `vptune.save` writes.
    """

    backbone: str
    method: str
    options: dict[str, Any]
    head: dict[str, Any]
    num_classes: int
    tasks: int
    backbone_params: int
    tuned_params: int
    head_params: int
    shares_backbone: bool
    bytes_per_task: int

    @property
    def share(self) -> float:
        """Tuned parameters per task as a fraction of the backbone's."""
        return self.tuned_params / self.backbone_params

    @property
    def stored_params(self) -> int:
        """Parameters stored for `tasks` tasks: the shared backbone once, plus every task's."""
        return stored_params(self.backbone_params, self.tuned_params, self.tasks, self.shares_backbone)

    @property
    def total_multiple(self) -> float:
        """The paper's "Total params": stored parameters over the backbone's (see `total_multiple`)."""
        return total_multiple(self.backbone_params, self.tuned_params, self.tasks, self.shares_backbone)


def stored_params(backbone_params: float, tuned_params: float, tasks: int, shares_backbone: bool) -> float:
    """Parameters stored for `tasks` tasks of `tuned_params` each: the backbone once when shared."""
    return (backbone_params if shares_backbone else 0) + tasks * tuned_params


def total_multiple(backbone_params: float, tuned_params: float, tasks: int, shares_backbone: bool) -> float:
    """The paper's "Total params" for `tasks` tasks: stored parameters over the backbone's.

    As in the paper, a method that tunes every backbone tensor (Full) shares nothing, so
    T tasks store T tuned copies (24.02x for 24 tasks on ViT-B); any other method stores
    the backbone once plus T per-task sets (e.g. Partial-1 is 3.00x). `tuned_params` may be
    a mean over tasks whose heads differ in size: T times it is their sum.
    """
    return stored_params(backbone_params, tuned_params, tasks, shares_backbone) / backbone_params


def storage_report(
    backbone: str,
    method: str,
    *,
    tasks: int = 1,
    num_classes: int = 100,
    pretrained: bool = False,
    img_size: int | None = None,
    arch: str | None = None,
    allow_keys: tuple[str, ...] = (),
    head: str = "linear",
    head_options: dict[str, Any] | None = None,
    **method_options: Any,
) -> StorageReport:
    """Build `method` with a `head` on `backbone` and measure what each of `tasks` tasks stores.

    Only shapes matter, so unless `pretrained` a timm model is built on the meta device
    (shapes without values: a ViT-L in a blink) and the bytes are counted on zeros of the
    tuned tensors' shapes. Raises VptuneError (BackboneError, MethodError, HeadError) for
    unusable arguments.
    """
    if not isinstance(tasks, int) or tasks < 1:
        raise VptuneError(f"tasks must be a whole number >= 1, got {tasks!r}")
    shapes_only = not pretrained and timm.is_model(backbone)
    with torch.device("meta" if shapes_only else "cpu"):
        module, ref = build_backbone(backbone, pretrained=pretrained, img_size=img_size, arch=arch,
                                     allow_keys=allow_keys)
        pretrained_params = list(module.parameters())
        model = create(
            module, method, num_classes,
            pretrained=ref.pretrained, img_size=img_size, backbone_id=ref.id,
            head=head, head_options=head_options, **method_options,
        )
    # The file's size depends on the tensors' shapes and dtypes, not their values.
    tensors = {name: torch.zeros(t.shape, dtype=t.dtype) for name, t in model.tuned_state_dict().items()}
    metadata = task_file_metadata(model)
    return StorageReport(
        backbone=ref.id,
        method=method,
        options=model.config["options"],
        head=model.config["head"],
        num_classes=num_classes,
        tasks=tasks,
        backbone_params=sum(p.numel() for p in pretrained_params),
        tuned_params=sum(p.numel() for p in model.trainable_parameters().values()),
        head_params=sum(p.numel() for p in model.head.parameters() if p.requires_grad),
        shares_backbone=not all(p.requires_grad for p in pretrained_params),
        bytes_per_task=len(serialize(tensors, metadata)),
    )
