"""Building a tuned model: backbone + method + head."""

from __future__ import annotations

from typing import Any

from torch import nn

from .backbones import BackboneRef, build_backbone, freeze
from .errors import HeadError, MethodError
from .heads import get_head
from .methods import get_method
from .model import TunedModel
from .option_fields import options_dict
from .prompts.prototypes import requested_init
from .tasks import get_task_type
from .values import coerce_fields


def create(
    backbone: str | nn.Module,
    method: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    img_size: int | None = None,
    arch: str | None = None,
    allow_keys: tuple[str, ...] = (),
    class_names: list[str] | None = None,
    backbone_id: str | None = None,
    head: str = "linear",
    head_options: dict[str, Any] | None = None,
    task_type: str | None = None,
    backbone_fingerprint: str | None = None,
    **method_options: Any,
) -> TunedModel:
    """Wrap a pretrained backbone with a tuning method and a `num_classes` head.

    `backbone` is `dinov2-s14-imgfocus`, a timm model name, a checkpoint path (with `arch`),
    or an already built timm model (recorded as `backbone_id`; `backbone_fingerprint` may pass
    its known weights fingerprint). Method options are keyword arguments, e.g. `num_prompts=50`.
    `head` is a head kind (`vptune.heads.available_heads()`: `linear`, `mlp`, `setr-pup`,
    `setr-naive`) with its `head_options`, e.g. `head="setr-pup", head_options={"aux_blocks": []}`;
    a segmentation head makes a segmentation model. `task_type` (`vptune.tasks`: `classification`,
    `segmentation`, `multilabel`) defaults to the head's; it decides how the model's logits are
    scored and read (e.g. `multilabel`: sigmoid per class, with a classification head). The model
    prepares images as the VTAB protocol does until `set_input_spec` says otherwise. Raises
    BackboneError, MethodError or HeadError (also for arguments of the wrong type).
    """
    coerce_fields(create, {"backbone": backbone, "method": method, "num_classes": num_classes,
                           "pretrained": pretrained, "img_size": img_size, "arch": arch, "allow_keys": allow_keys,
                           "class_names": class_names, "backbone_id": backbone_id, "head": head,
                           "head_options": head_options, "task_type": task_type,
                           "backbone_fingerprint": backbone_fingerprint},
                  text=False, error=MethodError)
    if num_classes < 1:
        raise MethodError(f"num_classes must be a whole number >= 1, got {num_classes!r}")
    if class_names is not None and len(class_names) != num_classes:
        raise MethodError(f"{len(class_names)} class names given for {num_classes} classes")
    if task_type is not None and get_task_type(task_type).heads != get_head(head).task_type:
        raise HeadError(f"head '{head}' is a {get_head(head).task_type} head; task type '{task_type}' trains "
                        f"{get_task_type(task_type).heads} heads")
    tuning, implied = get_method(method)
    options = tuning.parse_options({**implied, **method_options})
    if isinstance(backbone, nn.Module):
        freeze(backbone)
        name = backbone_id or backbone.default_cfg.get("architecture", type(backbone).__name__)
        ref = BackboneRef(name, backbone.default_cfg.get("architecture", name), img_size, pretrained)
    else:
        backbone, ref = build_backbone(
            backbone, pretrained=pretrained, img_size=img_size, arch=arch, allow_keys=allow_keys
        )
    model = TunedModel(
        backbone, ref, num_classes, method=method, options={}, class_names=class_names,
        head=head, head_options=head_options, task_type=task_type,
        backbone_fingerprint=backbone_fingerprint,
    )
    tuning.attach(model, options)
    model.prompt_init = requested_init(options, model.prompt, method)
    model.fit_head()
    # JSON-shaped (tuples become lists) so the options round-trip through files unchanged.
    model.config["options"] = options_dict(options)
    return model
