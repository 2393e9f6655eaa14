"""Every tuning method: which tensors train, that only they move, and that per-task files rebuild them."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import pytest
import timm
import torch
import torch.nn.functional as F

import vptune
from vptune.errors import MethodError
from vptune.methods import available_methods
from vptune.methods.ssf import ScaleShift
from vptune.model import TunedModel

from conftest import tiny_vit
from test_conv import tiny_resnet
from test_swin import tiny_swin

# Family -> (tiny backbone, input size).
BUILDERS: dict[str, tuple[Callable[[], torch.nn.Module], int]] = {
    "vit": (tiny_vit, 32),
    "swin": (tiny_swin, 64),
    "resnet": (tiny_resnet, 32),
}
LAST_BLOCK = {
    "vit": "backbone.blocks.2.",
    "swin": "backbone.layers.1.blocks.1.",
    "resnet": "backbone.layer4.0.",
    "vit_base_patch16_224": "backbone.blocks.11.",
    "swin_tiny_patch4_window7_224": "backbone.layers.3.blocks.1.",
    "resnet50": "backbone.layer4.2.",
}


def _bias(name: str) -> bool:
    return name.startswith("backbone.") and name.endswith(".bias")


# The parameters each method trains besides the head, by name, written independently of the methods.
INTENDED: dict[str, Callable[[str, str], bool]] = {
    "full": lambda name, family: True,
    "linear": lambda name, family: False,
    "partial-1": lambda name, family: name.startswith((LAST_BLOCK[family], "backbone.norm.")),
    "mlp-3": lambda name, family: False,
    "sidetune": lambda name, family: name.startswith("side."),
    "bias": lambda name, family: _bias(name),
    "adapter": lambda name, family: ".mlp.adapter." in name,
    "adapter-plus": lambda name, family: ".adapter_plus." in name,
    "adaptformer": lambda name, family: ".adaptformer." in name,
    "vpt-shallow": lambda name, family: name.startswith("prompt."),
    "vpt-deep": lambda name, family: name.startswith("prompt."),
    "vpt-deep+bias": lambda name, family: name.startswith("prompt.") or _bias(name),
    "vfpt": lambda name, family: name.startswith("prompt."),
    "lora": lambda name, family: ".lora_A." in name or ".lora_B." in name,
    "ssf": lambda name, family: ".ssf." in name,
    "e2vpt": lambda name, family: name.startswith("prompt."),
}


def registered_name(case: str) -> str:
    """The registry's name of a case: `partial-1` is registered as `partial-k`."""
    return re.sub(r"-\d+$", "-k", case)


CONV_METHODS = ("full", "linear", "partial-1", "mlp-3", "sidetune", "bias", "vpt-shallow")
CASES = [(f, m) for f in BUILDERS for m in INTENDED if f != "resnet" or m in CONV_METHODS]


def options_for(method: str) -> dict:
    return {"num_prompts": 3} if method.startswith(("vpt", "vfpt")) else {}


def build(family: str, method: str, **options) -> tuple[TunedModel, torch.Tensor]:
    builder, size = BUILDERS[family]
    model = vptune.create(builder(), method, 4, img_size=size, **{**options_for(method), **options})
    return model, torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def intended_names(model, method: str, family: str) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.startswith("head.") or INTENDED[method](n, family)}


def sgd_steps(model, images: torch.Tensor, steps: int, **sgd) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, **sgd)
    labels = torch.arange(len(images)) % model.num_classes
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()


def assert_only_intended_move(model, intended: set[str], images: torch.Tensor, **sgd) -> None:
    assert set(model.trainable_parameters()) == intended
    # Buffers of tuned modules (batch-norm statistics of a training side network) may move too.
    tuned_buffers = set(model.tuned_state_dict()) - intended
    before = {k: v.clone() for k, v in model.state_dict().items() if k not in tuned_buffers}
    sgd_steps(model, images, **sgd)
    for name, value in model.state_dict().items():
        if name in intended:
            assert not torch.equal(value, before[name]), f"{name} did not move"
        elif name not in tuned_buffers:
            assert torch.equal(value, before[name]), f"{name} changed"
    assert all(p.grad is None for n, p in model.named_parameters() if n not in intended)


def test_every_registered_method_has_its_intended_tensors_written_down():
    # CASES runs the checks below for every INTENDED entry, so a new method must add one.
    assert sorted({registered_name(case) for case in INTENDED}) == available_methods()
    assert {method for family, method in CASES if family == "vit"} == set(INTENDED)


@pytest.mark.parametrize("family,method", CASES)
def test_only_the_intended_tensors_train_and_move(family, method):
    model, images = build(family, method)
    intended = intended_names(model, method, family)
    assert_only_intended_move(model, intended, images, steps=3, momentum=0.9, weight_decay=0.01)


@pytest.mark.parametrize("family,method", CASES)
def test_save_load_round_trip_gives_identical_logits(tmp_path, family, method):
    model, images = build(family, method)
    with torch.no_grad():
        for tensor in model.tuned_state_dict().values():  # views of the model's own tensors
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.rand_like(tensor))  # positive: running variances stay valid
    path = vptune.save(model, tmp_path / "task.safetensors")
    restored = vptune.load(path, backbone=BUILDERS[family][0]()).eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(images), model(images), atol=0, rtol=0)


def test_adapter_down_and_up_projections_both_move():
    model, images = build("vit", "adapter", reduction=4)
    adapter = model.backbone.blocks[0].mlp.adapter
    assert adapter.down.weight.shape == (16, 64)
    assert torch.count_nonzero(adapter.up.weight) == 0 and torch.count_nonzero(adapter.down.weight) > 0
    down, up = adapter.down.weight.clone(), adapter.up.weight.clone()
    sgd_steps(model, images, steps=2)  # plain SGD: a weight moves only by its own gradient
    assert not torch.equal(adapter.up.weight, up)
    assert not torch.equal(adapter.down.weight, down)


@pytest.mark.parametrize("family", ["vit", "swin"])
@pytest.mark.parametrize("method", ["adapter", "lora", "ssf"])
def test_added_modules_start_as_the_pretrained_backbone(family, method):
    model, images = build(family, method)
    reference = BUILDERS[family][0]()
    expected = reference.forward_head(reference.forward_features(images), pre_logits=True)
    torch.testing.assert_close(model.embed(images), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family,k,prefixes", [
    ("vit", 2, ("blocks.1.", "blocks.2.", "norm.")),
    ("swin", 3, ("layers.0.blocks.1.", "layers.1.", "norm.")),  # merging belongs to its stage's first block
    ("resnet", 2, ("layer3.", "layer4.")),
])
def test_partial_k_trains_the_last_k_blocks(family, k, prefixes):
    model, _ = build(family, f"partial-{k}")
    trained = {n[len("backbone."):] for n in model.trainable_parameters() if n.startswith("backbone.")}
    assert trained == {n for n, _ in model.backbone.named_parameters() if n.startswith(prefixes)}
    assert model.config["options"] == {"k": k}


@pytest.mark.parametrize("method,message", [("partial-4", "has 3 blocks"), ("partial-0", "k >= 1")])
def test_partial_k_outside_the_depth_is_refused(method, message):
    with pytest.raises(MethodError, match=message):
        build("vit", method)


def test_mlp_k_has_k_layers_of_feature_width():
    one, _ = build("vit", "mlp-1")
    three, _ = build("vit", "mlp-3")
    assert [type(m).__name__ for m in one.head] == ["Linear"]
    assert [type(m).__name__ for m in three.head] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert sum(p.numel() for p in three.trainable_parameters().values()) == 2 * (64 * 64 + 64) + 64 * 4 + 4


def test_sidetune_blends_through_a_sigmoid_gate():
    model, images = build("vit", "sidetune")
    model.eval()
    with torch.no_grad():
        model.side.gate.fill_(0.3)
        frozen = model.backbone.forward_head(model.backbone.forward_features(images), pre_logits=True)
        alpha = torch.sigmoid(torch.tensor(0.3))
        expected = alpha * frozen + (1 - alpha) * model.side.net(images)
        torch.testing.assert_close(model.embed(images), expected, atol=1e-6, rtol=0)


def test_only_full_puts_the_backbone_in_training_mode():
    full, _ = build("swin", "full")
    bias, _ = build("swin", "bias")
    full.train(), bias.train()
    assert all(m.training for m in full.backbone.modules())
    assert not any(m.training for m in bias.backbone.modules())


def test_lora_is_peft_injected_and_its_dropout_follows_train_mode():
    from peft.tuners.lora import LoraLayer

    model, _ = build("vit", "lora", rank=2, dropout=0.1, target_modules=["qkv", "fc1"])
    block = model.backbone.blocks[0]
    assert isinstance(block.attn.qkv, LoraLayer) and isinstance(block.mlp.fc1, LoraLayer)
    assert block.attn.qkv.lora_A["default"].weight.shape == (2, 64)
    model.train()
    assert block.attn.qkv.lora_dropout["default"].training
    assert not block.attn.qkv.base_layer.training and not block.mlp.fc2.training


def test_ssf_follows_every_linear_layer_norm_and_the_patch_embedding():
    fresh = tiny_vit()
    expected = sum(isinstance(m, (torch.nn.Linear, torch.nn.LayerNorm)) for m in fresh.modules()) + 1
    model, _ = build("vit", "ssf")
    assert sum(isinstance(m, ScaleShift) for m in model.backbone.modules()) == expected
    assert model.backbone.patch_embed.proj.ssf.scale.shape == (64,)


def test_a_backbone_cannot_carry_two_models_modules():
    backbone = tiny_vit()
    vptune.create(backbone, "adapter", 4)
    with pytest.raises(MethodError, match="already holds 'adapter' modules"):
        vptune.create(backbone, "adapter", 4)


@pytest.mark.parametrize("method,options,message", [
    ("adapter", {"reduction": 0}, "reduction"),
    ("lora", {"rank": 0}, "rank"),
    ("lora", {"dropout": 1.0}, "dropout"),
    ("lora", {"target_modules": "qkv"}, "target_modules takes a list"),
    ("lora", {"target_modules": []}, "list of module names"),
    ("lora", {"rank": 2.5}, "rank must be a whole number, got 2.5"),
    ("lora", {"target_modules": ["nope"]}, "match no linear layer"),
    ("mlp-0", {}, "k >= 1"),
    ("sidetune", {"width": 0}, "width"),
    ("bias", {"reduction": 4}, "no option reduction"),
])
def test_bad_options_are_refused(method, options, message):
    with pytest.raises(MethodError, match=message):
        build("vit", method, **options)


ACCEPTANCE = {
    "vit_base_patch16_224": tuple(INTENDED),
    "swin_tiny_patch4_window7_224": tuple(INTENDED),
    "resnet50": CONV_METHODS,
}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ACCEPTANCE)
def test_every_method_trains_one_step_on_the_paper_backbones(arch):
    torch.manual_seed(0)
    random_init = {"zero_init_last": False} if arch == "resnet50" else {}  # see tiny_resnet
    backbone = timm.create_model(arch, pretrained=False, num_classes=0, **random_init).eval()
    images = torch.randn(1, 3, 224, 224)
    for method in ACCEPTANCE[arch]:
        model = vptune.create(copy.deepcopy(backbone), method, 10, **options_for(method))
        # One step; momentum and weight decay move every tuned tensor, zero-initialised ones too. AdaptFormer's
        # down bias (not decayed) has no gradient while its up projection is still zero: it moves in step 2.
        steps = 2 if method == "adaptformer" else 1
        assert_only_intended_move(
            model, intended_names(model, method, arch), images, steps=steps, momentum=0.9, weight_decay=1e-4
        )


@pytest.mark.parametrize("family,method", CASES)
def test_a_method_declares_whether_it_changes_the_backbone(family, method):
    model, _ = build(family, method)
    in_backbone = any(name.startswith("backbone.") for name in model.tuned_state_dict())
    assert vptune.methods.get_method(method)[0].changes_backbone == in_backbone


@pytest.mark.parametrize("builder,family", [("vit", "vit"), ("swin", "swin"), ("resnet", "conv")])
def test_each_backbone_is_claimed_by_one_registered_family(builder, family):
    from vptune.prompts import FAMILIES, backbone_family

    backbone = BUILDERS[builder][0]()
    assert backbone_family(backbone).name == family
    assert [f.name for f in FAMILIES if f.matches(backbone)] == [family]
