"""Per-task files: the tuned tensors in safetensors, with a JSON description in the header."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ._version import __version__
from .backbones import build_backbone, fingerprint
from .data.transforms import InputSpec
from .errors import CheckpointMismatchError, VptuneError
from .files import atomic_path, write_error
from .hub.tasks import is_hub_uri, task_file
from .model import TunedModel
from .values import coerce_fields

FORMAT = "vptune-task/1"
# What `load` and `vptune info` read from a per-task file's description.
DESCRIPTION_KEYS = ("method", "options", "num_classes", "class_names", "backbone", "arch", "img_size", "pretrained",
                    "backbone_fingerprint", "vptune_version")


def task_file_contents(model: TunedModel) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the safetensors metadata (JSON description) a per-task file of `model` holds."""
    tensors = {name: t.contiguous().cpu() for name, t in model.tuned_state_dict().items()}
    return tensors, task_file_metadata(model)


def task_file_metadata(model: TunedModel) -> dict[str, str]:
    """The safetensors metadata of a per-task file of `model`: its JSON description."""
    description = {
        **model.config,
        "format": FORMAT,
        "backbone_fingerprint": model.backbone_fingerprint,
        "vptune_version": __version__,
    }
    return {"vptune": json.dumps(description)}


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]


def save(model: TunedModel, path: str | os.PathLike) -> Path:
    """Write the tuned tensors of `model` and its description to one `.safetensors` file.

    Raises VptuneError, leaving no file behind, when a tuned tensor is not finite or the file cannot be written.
    """
    if not isinstance(model, TunedModel):
        raise VptuneError(f"save takes a model made by vptune.create or vptune.load, got {type(model).__name__}")
    coerce_fields(save, {"path": path}, text=False)
    path = Path(path)
    tensors, metadata = task_file_contents(model)
    bad = non_finite_tensors(tensors)
    if bad:
        raise VptuneError(f"not saving '{path}': tuned tensor {bad[0]} holds NaN or infinite values")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from exc
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_description(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON description stored in a per-task file (a path or `hf://...`), without loading its tensors."""
    from safetensors import safe_open

    coerce_fields(read_description, {"path": path}, text=False)
    path = local_task_file(path)
    if not path.is_file():
        raise VptuneError(f"per-task file '{path}' does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise VptuneError(f"'{path}' is not a safetensors file: {exc}") from exc
    if "vptune" not in metadata:
        raise VptuneError(f"'{path}' is a safetensors file but not a vptune per-task file")
    try:
        description = json.loads(metadata["vptune"])
    except json.JSONDecodeError as exc:
        raise VptuneError(f"'{path}' has a damaged vptune description (invalid JSON: {exc}); "
                          "save the model again") from exc
    missing = [key for key in DESCRIPTION_KEYS if key not in description] if isinstance(description, dict) else ["all"]
    if missing:
        raise VptuneError(f"'{path}' has a damaged vptune description (missing {', '.join(missing)}); "
                          "save the model again")
    return description


def load(
    path: str | os.PathLike,
    backbone: str | nn.Module | None = None,
    *,
    map_location: str | torch.device = "cpu",
    backbone_fingerprint: str | None = None,
) -> TunedModel:
    """Rebuild the model saved at `path`, with the input pipeline it recorded (`model.input_spec`).

    `path` is a local file or a file on the Hugging Face Hub, `hf://OWNER/NAME[@REVISION][/FILE]`
    (downloaded into the Hugging Face cache first; see `vptune.hub.tasks`).

    `backbone` defaults to the recorded backbone id; pass an id or a built timm model to use
    another copy of the same weights (`backbone_fingerprint`: its fingerprint, when already
    known). A backbone whose weights differ from the ones the file was trained on raises
    CheckpointMismatchError. Files without a recorded input pipeline prepare images as VTAB.
    """
    from .api import create

    coerce_fields(load, {"path": path, "backbone": backbone}, text=False)
    path = local_task_file(path)
    description = read_description(path)
    if not isinstance(backbone, nn.Module):
        backbone, _ = build_backbone(
            backbone or description["backbone"],
            pretrained=description["pretrained"],
            img_size=description["img_size"],
            arch=description["arch"] if backbone is None else None,
        )
    backbone_fingerprint = backbone_fingerprint or fingerprint(backbone)
    _check_same_backbone(path, description, backbone_fingerprint)
    # Files from before heads were recorded hold a linear classifier.
    head = dict(description.get("head", {"kind": "linear"}))
    model = create(
        backbone,
        description["method"],
        description["num_classes"],
        pretrained=description["pretrained"],
        img_size=description["img_size"],
        class_names=description["class_names"],
        backbone_id=description["backbone"],
        head=head.pop("kind"),
        head_options=head,
        task_type=description.get("task_type"),
        backbone_fingerprint=backbone_fingerprint,
        **description["options"],
    )
    if "input" in description:
        model.set_input_spec(InputSpec.from_dict(description["input"]))
    tensors = load_file(str(path), device=str(map_location))
    expected = model.tuned_state_dict().keys()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"'{path}' does not fit method '{description['method']}': "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    model.load_state_dict(tensors, strict=False)
    return model


def local_task_file(path: str | os.PathLike) -> Path:
    """`path` itself, or for `hf://...` the downloaded file in the Hugging Face cache."""
    return task_file(path) if is_hub_uri(path) else Path(path)


def _check_same_backbone(path: Path | str, description: dict[str, Any], weights: str) -> None:
    if weights != description["backbone_fingerprint"]:
        raise CheckpointMismatchError(
            f"'{path}' was tuned on backbone '{description['backbone']}' "
            f"(weights {description['backbone_fingerprint']}), but the given backbone's weights "
            f"are {weights}; load it onto the backbone it was made for"
        )
