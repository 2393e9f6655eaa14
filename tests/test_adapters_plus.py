"""Adapter+ and AdaptFormer: parity with forwards written from timm's pieces and the papers' equations,
their initialisation, train-mode behaviour, files, the CLI and refusals."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

import vptune
from vptune.accounting import storage_report
from vptune.cli.main import main
from vptune.backbones import fingerprint
from vptune.errors import CheckpointMismatchError, MethodError, TaskFileError
from vptune.methods.adapter_plus import AdapterPlus
from vptune.methods.adaptformer import AdaptMlp
from vptune.prompts import vit_block_maps

from conftest import TINY_CLI, VARIANTS, assert_one_line_error, tiny_vit
from test_conv import tiny_resnet
from test_swin import tiny_swin

METHODS = ("adapter-plus", "adaptformer")
BACKBONES: dict[str, tuple[Callable[[], torch.nn.Module], int]] = {
    "vit": (tiny_vit, 32),
    "vit-dinov2": (lambda: tiny_vit(**VARIANTS["dinov2-registers"]), 32),  # layer scale and register tokens
    "swin": (tiny_swin, 64),
}
TRUNCATED_STD = 0.01 * 0.8796  # std of N(0, 0.01^2) truncated at +-2 std


def build(method: str, backbone: str, **options) -> tuple[vptune.TunedModel, torch.Tensor]:
    builder, size = BACKBONES[backbone]
    model = vptune.create(builder(), method, 4, img_size=size, **options)
    return model, torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))


def perturb(model: vptune.TunedModel) -> None:
    """Random values in every tuned tensor, so no part of an adapter's equation is left at its initial value."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for tensor in model.trainable_parameters().values():
            tensor.add_(0.3 * torch.randn(tensor.shape, generator=generator))


def adapter_blocks(model: vptune.TunedModel) -> list[torch.nn.Module]:
    backbone = model.backbone
    if hasattr(backbone, "layers"):
        return [block for stage in backbone.layers for block in stage.blocks]
    return list(backbone.blocks)


# ---------------------------------------------------------------- the papers' equations

def adapter_plus_branch(x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Adapter+ (Steitz & Roth): s * (W_up GELU(W_down x + b_down) + b_up), s one scale per channel."""
    hidden = F.gelu(F.linear(x, state["down.weight"], state["down.bias"]))
    return state["scale"] * F.linear(hidden, state["up.weight"], state["up.bias"])


def adaptmlp_branch(x: torch.Tensor, state: dict[str, torch.Tensor], scale: float) -> torch.Tensor:
    """AdaptFormer's AdaptMLP: s * (ReLU(x W_down + b_down) W_up + b_up)."""
    hidden = F.relu(F.linear(x, state["down.weight"], state["down.bias"]))
    return scale * F.linear(hidden, state["up.weight"], state["up.bias"])


def reference_block(method: str, block: torch.nn.Module, x: torch.Tensor, state: dict, scale: float) -> torch.Tensor:
    """One pre-norm block of an unmodified backbone (ViT tokens or Swin (B, H, W, C) maps) with the adapter.

    Adapter+ (Post-Adapter): y = x + attn branch; z = y + MLP branch; out = z + A(z).
    AdaptFormer (parallel): y = x + attn branch; out = y + MLP branch(y) + s * AdaptMLP(y).
    """
    if x.ndim == 4:  # Swin: window attention on the map, the MLP on the flattened tokens
        batch, height, width, channels = x.shape
        y = (x + block._attn(block.norm1(x))).reshape(batch, -1, channels)
        mlp = block.mlp(block.norm2(y))
    else:
        y = x + block.ls1(block.attn(block.norm1(x)))
        mlp = block.ls2(block.mlp(block.norm2(y)))
    if method == "adapter-plus":
        z = y + mlp
        out = z + adapter_plus_branch(z, state)
    else:
        out = y + mlp + adaptmlp_branch(y, state, scale)
    return out.reshape(x.shape)


def adapter_states(model: vptune.TunedModel, method: str) -> list[dict[str, torch.Tensor]]:
    name = "adapter_plus" if method == "adapter-plus" else "adaptformer"
    return [getattr(block, name).state_dict() for block in adapter_blocks(model)]


def reference_features(method: str, fresh: torch.nn.Module, states: list[dict], images: torch.Tensor,
                       scale: float = 0.1) -> torch.Tensor:
    """Pre-head features of the unmodified backbone `fresh` with the adapters of `states` written in."""
    blocks = iter(states)
    if hasattr(fresh, "layers"):
        x = fresh.patch_embed(images)
        for stage in fresh.layers:
            x = stage.downsample(x)
            for block in stage.blocks:
                x = reference_block(method, block, x, next(blocks), scale)
    else:
        x = fresh.norm_pre(fresh._pos_embed(fresh.patch_embed(images)))
        for block in fresh.blocks:
            x = reference_block(method, block, x, next(blocks), scale)
    return fresh.forward_head(fresh.norm(x), pre_logits=True)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("method", METHODS)
def test_forward_equals_the_papers_equations_on_timm_pieces(method, backbone):
    model, images = build(method, backbone)
    perturb(model)
    model.eval()
    with torch.no_grad():
        expected = reference_features(method, BACKBONES[backbone][0](), adapter_states(model, method), images)
        torch.testing.assert_close(model.embed(images), expected, atol=1e-5, rtol=1e-5)


def test_adaptformer_scale_and_bottleneck_options_reach_the_forward():
    model, images = build("adaptformer", "vit", bottleneck=5, scale=0.7)
    perturb(model)
    model.eval()
    assert model.backbone.blocks[0].adaptformer.down.weight.shape == (5, 64)
    with torch.no_grad():
        expected = reference_features("adaptformer", tiny_vit(), adapter_states(model, "adaptformer"), images, 0.7)
        torch.testing.assert_close(model.embed(images), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_block_maps_for_a_segmentation_head_see_the_adapters(method, images):
    # A head that reads blocks runs them through the row-wise ViT path, not timm's forward.
    model, _ = build(method, "vit-dinov2")
    perturb(model)
    model.eval()
    fresh, states = BACKBONES["vit-dinov2"][0](), adapter_states(model, method)
    with torch.no_grad():
        x = fresh.norm_pre(fresh._pos_embed(fresh.patch_embed(images)))
        for block, state in zip(fresh.blocks[:2], states):
            x = reference_block(method, block, x, state, 0.1)
        (got,) = vit_block_maps(model.backbone, images, None, [1])
    expected = x[:, -16:].transpose(1, 2).reshape(3, 64, 4, 4)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_adaptformer_gradients_are_the_same_with_gradient_checkpointing(images):
    # The AdaptMLP's output waits between two hooks; recomputing a block in the backward pass repeats both.
    grads = []
    for checkpointing in (False, True):
        model, _ = build("adaptformer", "vit", dropout=0.0)
        perturb(model)
        model.set_grad_checkpointing(checkpointing)
        model.train()
        model(images).sum().backward()
        grads.append({n: p.grad for n, p in model.trainable_parameters().items()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- initialisation and train mode

@pytest.mark.parametrize("backbone", ["vit", "swin"])
def test_adaptformer_starts_as_the_frozen_backbone(backbone):
    model, images = build("adaptformer", backbone)
    fresh = BACKBONES[backbone][0]()
    with torch.no_grad():
        expected = fresh.forward_head(fresh.forward_features(images), pre_logits=True)
        torch.testing.assert_close(model.eval().embed(images), expected, atol=1e-6, rtol=0)
    for block in adapter_blocks(model):
        adapter = block.adaptformer
        # The authors' "lora" init: down kaiming-uniform (bound 1 / sqrt(fan_in)), its bias and all of up zero.
        assert 0 < adapter.down.weight.abs().max() <= 1 / math.sqrt(adapter.down.in_features)
        assert not adapter.down.bias.any() and not adapter.up.weight.any() and not adapter.up.bias.any()


def test_adapter_plus_starts_with_houlsby_weights_and_unit_scales():
    model, _ = build("adapter-plus", "vit", bottleneck=16)
    adapters = [block.adapter_plus for block in adapter_blocks(model)]
    weights = torch.cat([w.flatten() for a in adapters for w in (a.down.weight, a.up.weight)])
    assert weights.abs().max() <= 0.02  # N(0, 0.01^2) truncated at two standard deviations
    assert abs(weights.std().item() - TRUNCATED_STD) < 5e-4
    for adapter in adapters:
        assert not adapter.down.bias.any() and not adapter.up.bias.any()
        assert torch.equal(adapter.scale, torch.ones(64))


def test_adapter_plus_drops_whole_samples_of_its_branch_while_training():
    model, _ = build("adapter-plus", "vit", drop_path=0.5)
    perturb(model)
    model.train()
    block, fresh = model.backbone.blocks[0], tiny_vit().blocks[0]
    assert block.adapter_plus.drop_path.training and not block.mlp.training and not block.attn.training
    x = torch.randn(16, 5, 64, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    with torch.no_grad():
        out = block(x)
        post = fresh(x)
        branch = adapter_plus_branch(post, block.adapter_plus.state_dict())
    kept = [torch.allclose(o, p + 2 * b, atol=1e-5) for o, p, b in zip(out, post, branch)]
    dropped = [torch.allclose(o, p, atol=1e-6) for o, p in zip(out, post)]
    assert all(k != d for k, d in zip(kept, dropped))  # each sample: its branch kept (scaled by 1/keep) or dropped
    assert any(kept) and any(dropped)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(block(x), post + branch, atol=1e-5, rtol=1e-5)


def test_adaptformer_dropout_follows_train_mode_inside_the_frozen_backbone():
    model, _ = build("adaptformer", "swin")
    model.train()
    for block in adapter_blocks(model):
        assert block.adaptformer.dropout.training and block.adaptformer.dropout.p == 0.1
        assert not block.mlp.training and not block.norm2.training
    model.eval()
    assert not any(m.training for m in model.modules())


# ---------------------------------------------------------------- files, counts, serving

@pytest.mark.parametrize("method", METHODS)
def test_task_file_round_trip_and_fingerprint_check(tmp_path, method):
    model, images = build(method, "vit-dinov2")
    perturb(model)
    path = vptune.save(model.eval(), tmp_path / "task.safetensors")
    saved = set(load_file(path))
    assert saved == set(model.trainable_parameters())
    restored = vptune.load(path, backbone=BACKBONES["vit-dinov2"][0]()).eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(images), model(images), atol=0, rtol=0)
    assert restored.config["options"] == model.config["options"]
    other = tiny_vit(**VARIANTS["dinov2-registers"])
    with torch.no_grad():
        other.blocks[0].attn.proj.bias.add_(1.0)
    with pytest.raises(CheckpointMismatchError, match="load it onto the backbone it was made for"):
        vptune.load(path, backbone=other)


@pytest.mark.parametrize("method,per_block", [
    ("adapter-plus", 768 * 8 + 8 + 8 * 768 + 768 + 768),  # down, up (with biases) and the channel scales
    ("adaptformer", 768 * 64 + 64 + 64 * 768 + 768),
])
def test_params_counts_the_adapters_of_every_block(method, per_block):
    report = storage_report("vit_base_patch16_224", method, num_classes=10)
    assert report.tuned_params == 12 * per_block + 768 * 10 + 10


def test_multitask_runs_them_on_their_own_backbone_copies(tmp_path, images):
    shared = tiny_vit()
    before = fingerprint(shared)
    serving = vptune.MultiTask(shared)
    expected = {}
    for name, method, options in [("plus", "adapter-plus", {}), ("former", "adaptformer", {}),
                                  ("deep", "vpt-deep", {"num_prompts": 2})]:
        model = vptune.create(tiny_vit(), method, 3, **options)
        perturb(model)
        path = vptune.save(model.eval(), tmp_path / f"{name}.safetensors")
        info = serving.add(name, path)
        assert info.shared == (method == "vpt-deep")
        with torch.no_grad():
            expected[name] = model(images)
    names = ["plus", "deep", "former"]
    logits = serving.logits(images, names)
    for row, name in enumerate(names):
        torch.testing.assert_close(logits[row], expected[name][row], atol=1e-5, rtol=1e-5)
    # The adapters live in the tasks' own copies; frozen tensors are shared, the shared backbone is untouched.
    assert fingerprint(shared) == before and not any(isinstance(m, (AdapterPlus, AdaptMlp)) for m in shared.modules())
    assert serving.model("plus").backbone.blocks[0].attn.qkv.weight is shared.blocks[0].attn.qkv.weight
    with pytest.raises(TaskFileError, match="cannot be the shared one"):
        vptune.MultiTask().add("own", vptune.create(tiny_vit(), "adaptformer", 3))


# ---------------------------------------------------------------- CLI and refusals

@pytest.mark.parametrize("method", METHODS)
def test_cli_train_runs_and_records_the_options(small_digits_root, tmp_path, method):
    out = tmp_path / "run"
    args = ["train", "--data", small_digits_root, "--task", "digits", *TINY_CLI, "--method", method,
            "--option", "bottleneck=4", "--epochs", 1, "--batch-size", 64, "--out", out, "--quiet"]
    assert main([str(a) for a in args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"] == method and config["method_options"]["bottleneck"] == 4
    assert config["lr"] == {"adapter-plus": 2e-3, "adaptformer": 5e-3}[method]  # docs/learning-rates.md
    added = "adapter_plus" if method == "adapter-plus" else "adaptformer"
    tensors = load_file(out / "task.safetensors")
    assert {name.split(".")[3] for name in tensors if name.startswith("backbone.")} == {added}
    assert summary["tuned_parameters"] == sum(t.numel() for t in tensors.values())


@pytest.mark.parametrize("method", METHODS)
def test_convnets_are_refused_in_one_line(method, capsys):
    with pytest.raises(MethodError, match=f"method '{method}' needs a timm backbone of family ViT, Swin; "
                                          "ResNet is a ConvNet"):
        vptune.create(tiny_resnet(), method, 4)
    code = main(["params", "--backbone", "resnet18", "--method", method])
    assert_one_line_error(code, capsys.readouterr().err, f"method '{method}' needs a timm backbone of family ViT, Swin")


@pytest.mark.parametrize("method,option,message", [
    ("adapter-plus", "bottleneck=0", "needs bottleneck >= 1"),
    ("adapter-plus", "drop_path=1", "needs drop_path in [0.0, 1.0), got 1.0"),
    ("adaptformer", "dropout=1.5", "needs dropout in [0.0, 1.0), got 1.5"),
    ("adaptformer", "reduction=4", "has no option reduction"),
])
def test_bad_options_are_refused_in_one_line(method, option, message, capsys):
    code = main(["params", "--backbone", "vit_tiny_patch16_224", "--img-size", "32", "--method", method,
                 "--option", option])
    assert_one_line_error(code, capsys.readouterr().err, message)
