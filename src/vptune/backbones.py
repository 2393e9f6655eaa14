"""Backbone ids -> frozen timm models: timm names, local checkpoints, the offline default."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from .backbone_checkpoints import load_checkpoint_into
from .errors import BackboneError

OFFLINE_DEFAULT = "dinov2-s14-imgfocus"


@dataclass(frozen=True)
class BackboneRef:
    """How a backbone was obtained, recorded in every per-task file."""

    id: str
    arch: str
    img_size: int | None
    pretrained: bool

# Larger inputs need attention maps no machine holds (4096 px at patch 14 is 85,000 tokens per image).
MAX_IMG_SIZE = 4096


def build_backbone(
    backbone: str,
    *,
    pretrained: bool = True,
    img_size: int | None = None,
    arch: str | None = None,
    allow_keys: tuple[str, ...] = (),
) -> tuple[nn.Module, BackboneRef]:
    """Build a headless, frozen timm backbone from an id.

    `backbone` is `dinov2-s14-imgfocus`, a timm model name, or a checkpoint path
    (then `arch` names the timm architecture). Raises BackboneError.
    """
    if img_size is not None and (isinstance(img_size, bool) or not isinstance(img_size, int)
                                 or not 1 <= img_size <= MAX_IMG_SIZE):
        raise BackboneError(f"img_size must be a whole number in [1, {MAX_IMG_SIZE}] (a multiple of the "
                            f"backbone's patch size), got {img_size!r}")
    if backbone == OFFLINE_DEFAULT:
        model = _build_imgfocus(img_size or 224)
        ref = BackboneRef(backbone, model.default_cfg.get("architecture", ""), img_size or 224, True)
    elif Path(backbone).suffix and Path(backbone).exists():
        if arch is None:
            raise BackboneError(
                f"backbone '{backbone}' is a checkpoint file; name its timm architecture with arch= "
                "(CLI: --arch), e.g. vit_base_patch16_224"
            )
        model = _create_timm(arch, pretrained=False, img_size=img_size)
        load_checkpoint_into(model, Path(backbone), allow_keys=allow_keys)
        ref = BackboneRef(str(Path(backbone).resolve()), arch, img_size, True)
    else:
        model = _create_timm(backbone, pretrained=pretrained, img_size=img_size)
        ref = BackboneRef(backbone, backbone, img_size, pretrained)
    _check_patch_grid(model, backbone)
    freeze(model)
    return model, ref


def freeze(model: nn.Module) -> None:
    """Stop gradients into every tensor of `model` and put it in eval mode."""
    for param in model.parameters():
        param.requires_grad_(False)
    model.eval()


def fingerprint(model: nn.Module) -> str:
    """A short hash of every tensor in `model`'s state dict (names, shapes, values).

    Tensors on the meta device (shapes only, as storage accounting builds them) have no
    values, so their fingerprint covers names, shapes and dtypes.
    """
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
        if tensor.is_meta:
            continue
        # reshape(-1): 0-dim tensors (batch norm's num_batches_tracked) cannot be viewed as bytes.
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _create_timm(name: str, *, pretrained: bool, img_size: int | None) -> nn.Module:
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise BackboneError(
            f"backbone '{name}' is not a timm model, an existing checkpoint file or "
            f"'{OFFLINE_DEFAULT}'{hint}"
        )
    kwargs = {"num_classes": 0}
    if img_size is not None:
        kwargs["img_size"] = img_size
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as exc:
        if "img_size" in str(exc):
            raise BackboneError(f"backbone '{name}' does not take an image size; leave img_size unset") from exc
        raise
    except (AssertionError, ValueError) as exc:
        raise BackboneError(f"backbone '{name}' cannot be built with img_size={img_size}: {exc}") from exc
    except (OSError, RuntimeError) as exc:
        if not pretrained:
            raise
        raise BackboneError(
            f"could not fetch pretrained weights for '{name}' ({type(exc).__name__}); "
            "check the network, or use pretrained=False, a local checkpoint, or "
            f"the offline backbone '{OFFLINE_DEFAULT}'"
        ) from exc


def _check_patch_grid(model: nn.Module, backbone: str) -> None:
    # timm floors the patch grid, so a size that is not a multiple of the patch would drop border pixels unseen.
    patch_embed = getattr(model, "patch_embed", None)
    img_size, patch_size = getattr(patch_embed, "img_size", None), getattr(patch_embed, "patch_size", None)
    if img_size is None or patch_size is None:
        return
    for size, patch in zip(img_size, patch_size):
        if size % patch:
            nearest = max(patch, round(size / patch) * patch)
            raise BackboneError(
                f"img_size {size} is not a multiple of the patch size {patch} of backbone '{backbone}'; try {nearest}"
            )


def _build_imgfocus(img_size: int) -> nn.Module:
    from .offline.imgfocus import ARCH, imgfocus_state_dict

    state = imgfocus_state_dict(img_size)
    model = timm.create_model(ARCH, pretrained=False, img_size=img_size, num_classes=0)
    model.load_state_dict(state, strict=True)
    return model
