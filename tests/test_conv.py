"""ConvNet prompts: a learnable pixel border around the input, and parity with timm."""

from __future__ import annotations

import pytest
import timm
import torch

import vptune
from vptune.errors import MethodError

from conftest import zero_prompt_features


def tiny_resnet() -> torch.nn.Module:
    """A random timm ResNet-18 with one block per stage.

    Not zero_init_last: a residual branch ending in a zero batch-norm weight passes no
    gradient to the biases inside it, which pretrained weights never have.
    """
    torch.manual_seed(0)
    return timm.create_model(
        "resnet18", pretrained=False, num_classes=0, layers=(1, 1, 1, 1), zero_init_last=False
    ).eval()


def tiny_convnext() -> torch.nn.Module:
    """A random timm ConvNeXt with one narrow block per stage."""
    torch.manual_seed(0)
    return timm.create_model(
        "convnext_atto", pretrained=False, num_classes=0, depths=(1, 1, 1, 1), dims=(16, 32, 64, 128)
    ).eval()


@pytest.fixture
def conv_images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("build", [tiny_resnet, tiny_convnext])
def test_zero_border_matches_timm_features(build, conv_images):
    backbone = build()
    expected = backbone.forward_head(backbone.forward_features(conv_images), pre_logits=True)
    torch.testing.assert_close(zero_prompt_features(backbone, conv_images, deep=False), expected, atol=1e-6, rtol=0)


def test_network_sees_the_image_framed_by_the_border(conv_images):
    backbone = tiny_resnet()
    model = vptune.create(backbone, "vpt-shallow", 5, num_prompts=3, img_size=32).eval()
    seen = []
    hook = backbone.conv1.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    model(conv_images)
    hook.remove()
    framed = seen[0]
    assert framed.shape == (2, 3, 38, 38)
    torch.testing.assert_close(framed[:, :, 3:-3, 3:-3], conv_images, atol=0, rtol=0)
    mean = torch.tensor(backbone.pretrained_cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(backbone.pretrained_cfg["std"]).view(3, 1, 1)
    top, bottom = model.prompt.top_bottom.detach()
    left, right = model.prompt.left_right.detach()
    torch.testing.assert_close(framed[0, :, :3], (top - mean) / std)
    torch.testing.assert_close(framed[1, :, -3:], (bottom - mean) / std)
    torch.testing.assert_close(framed[0, :, 3:-3, :3], (left - mean) / std)
    torch.testing.assert_close(framed[1, :, 3:-3, -3:], (right - mean) / std)


def test_border_width_defaults_to_five_pixels_of_the_input_size():
    model = vptune.create(tiny_resnet(), "vpt-shallow", 5)  # resnet18's input size: 224
    assert model.config["options"]["num_prompts"] == 5
    prompt_params = sum(p.numel() for p in model.prompt.parameters())
    assert prompt_params == 2 * 3 * 5 * (224 + 10) + 2 * 3 * 224 * 5
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 5)


def test_both_strips_train(conv_images):
    model = vptune.create(tiny_convnext(), "vpt-shallow", 5, num_prompts=2, img_size=32).eval()
    model(conv_images).sum().backward()
    assert model.prompt.top_bottom.grad.abs().sum() > 0 and model.prompt.left_right.grad.abs().sum() > 0


def test_wrong_input_size_is_refused():
    model = vptune.create(tiny_resnet(), "vpt-shallow", 5, num_prompts=2, img_size=32)
    with pytest.raises(MethodError, match="made for 32x32 images"):
        model(torch.zeros(1, 3, 48, 48))


@pytest.mark.parametrize("method,options,message", [
    ("vpt-deep", {}, "use vpt-shallow"),
    ("vpt-deep+bias", {}, "use vpt-shallow"),
    ("adapter", {}, "ResNet is a ConvNet"),
    ("ssf", {}, "ResNet is a ConvNet"),
    ("lora", {}, "match no linear layer"),
    ("vpt-shallow", {"prompt_dim": 4}, "ViT options"),
    ("vpt-shallow", {"prompt_dropout": 0.1}, "border prompt has none"),
    ("linear", {"output": "image-pool"}, "use output='cls'"),
])
def test_methods_that_do_not_apply_are_refused(method, options, message):
    with pytest.raises(MethodError, match=message):
        vptune.create(tiny_resnet(), method, 5, img_size=32, **options)
