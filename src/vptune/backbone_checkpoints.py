"""Loading user checkpoints (.npz, .pth, .pth.tar, .safetensors) strictly into timm models."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .errors import BackboneError

# Wrappers that training frameworks put around a model's own keys.
_STRIP_PREFIXES = ("module.", "model.", "backbone.")
# MoCo v3 keeps the encoder to transfer under this prefix, beside its momentum encoder and
# predictor; those stay under their own names and are refused unless allowed.
_ENCODER_PREFIX = "base_encoder."
_NESTED_KEYS = ("state_dict", "model", "module", "teacher")


def load_checkpoint_into(model: nn.Module, path: Path, *, allow_keys: tuple[str, ...] = ()) -> None:
    """Load `path` into `model`; refuse missing or unexpected keys unless listed in `allow_keys`.

    `allow_keys` entries match a key exactly or as a prefix (e.g. `head.` or `fc_norm.`).
    """
    if path.suffix == ".npz":
        _load_npz(model, path)
        return
    state = _read_state_dict(path)
    state = _strip_prefixes(state)
    if hasattr(model, "pos_embed") and "pos_embed" in state:
        state["pos_embed"] = _fit_pos_embed(model, state["pos_embed"])
    expected = model.state_dict().keys()
    missing = [k for k in expected if k not in state and not _allowed(k, allow_keys)]
    unexpected = [k for k in state if k not in expected and not _allowed(k, allow_keys)]
    if missing or unexpected:
        raise BackboneError(
            f"checkpoint '{path}' does not match the architecture: missing {_short(missing)}, "
            f"unexpected {_short(unexpected)}; allow keys by name (--allow-key PREFIX) if intended"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def _load_npz(model: nn.Module, path: Path) -> None:
    # Google's ImageNet-21k .npz files use their own names; timm's ViT knows how to read them.
    loader = getattr(model, "load_pretrained", None)
    if loader is None:
        raise BackboneError(f"'{path}' is a .npz checkpoint, which only timm ViT architectures can read")
    try:
        loader(str(path))
    except KeyError as exc:
        raise BackboneError(f"checkpoint '{path}' does not match the architecture: missing {exc}") from exc


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: say which, never a traceback
        raise BackboneError(f"cannot read checkpoint '{path}': {exc}") from exc
    while isinstance(obj, dict):
        nested = next((k for k in _NESTED_KEYS if k in obj and isinstance(obj[k], dict)), None)
        if nested is None:
            break
        obj = obj[nested]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneError(f"checkpoint '{path}' holds no state dict of tensors")
    return obj


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _STRIP_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    if any(k.startswith(_ENCODER_PREFIX) for k in state):
        state = {k.removeprefix(_ENCODER_PREFIX): v for k, v in state.items()}
    return state


def _fit_pos_embed(model: nn.Module, pos_embed: torch.Tensor) -> torch.Tensor:
    from timm.layers import resample_abs_pos_embed

    if pos_embed.shape == model.pos_embed.shape:
        return pos_embed
    prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
    return resample_abs_pos_embed(pos_embed, new_size=model.patch_embed.grid_size, num_prefix_tokens=prefix)


def _allowed(key: str, allow_keys: tuple[str, ...]) -> bool:
    return any(key == a or key.startswith(a) for a in allow_keys)


def _short(keys: list[str]) -> str:
    """Keys grouped by their first name part: 'decoder_embed.weight, momentum_encoder.* (152 keys)'."""
    if not keys:
        return "none"
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(key.split(".")[0], []).append(key)
    parts = [names[0] if len(names) == 1 else f"{group}.* ({len(names)} keys)" for group, names in groups.items()]
    return ", ".join(parts[:8]) + (f" (+{len(parts) - 8} more groups)" if len(parts) > 8 else "")
