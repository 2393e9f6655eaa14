"""The prompted ViT forward: parity with timm, the paper's insertion rules, ablations."""

from __future__ import annotations

import math

import pytest
import torch

import vptune
from vptune.errors import MethodError
from vptune.prompts.vit import vit_tokens

from conftest import tiny_vit, zero_prompt_features
from reference_vpt import reference_features, reference_logits


def test_zero_prompts_match_timm_features(variant_vit, images):
    expected = variant_vit.forward_head(variant_vit.forward_features(images), pre_logits=True)
    torch.testing.assert_close(zero_prompt_features(variant_vit, images, deep=True), expected, atol=1e-6, rtol=0)


def test_linear_matches_timm_features(variant_vit, images):
    model = vptune.create(variant_vit, "linear", 5)
    expected = variant_vit.forward_head(variant_vit.forward_features(images), pre_logits=True)
    torch.testing.assert_close(model.embed(images), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method,blocks", [("vpt-shallow", None), ("vpt-deep", None), ("vpt-deep", (2, 3)), ("vpt-deep", (1, 2))])
def test_forward_matches_independent_reference(method, blocks, images):
    backbone = tiny_vit(depth=4)
    options = {"deep_blocks": blocks} if blocks else {}
    model = vptune.create(backbone, method, 7, num_prompts=5, **options).eval()
    first, last = model.prompt.first_block, model.prompt.last_block
    expected = reference_logits(backbone, model.prompt.embeddings, model.head, first, last)(images)
    torch.testing.assert_close(model(images), expected, atol=1e-5, rtol=0)
    if blocks:
        assert (first, last) == (blocks[0] - 1, blocks[1] - 1)


def test_cls_output_does_not_depend_on_prompt_position(images):
    backbone = tiny_vit(depth=4)
    model = vptune.create(backbone, "vpt-deep", 7, num_prompts=4).eval()
    at_end = reference_logits(backbone, model.prompt.embeddings, model.head, 0, 3, at_end=True)(images)
    torch.testing.assert_close(model(images), at_end, atol=1e-5, rtol=0)


def test_deep_prompts_change_every_block_output(images):
    backbone = tiny_vit(depth=3)
    model = vptune.create(backbone, "vpt-deep", 2, num_prompts=3).eval()
    before = model(images)
    with torch.no_grad():
        model.prompt.embeddings[2].add_(torch.randn_like(model.prompt.embeddings[2]))  # last block only
    assert not torch.allclose(before, model(images))


def test_late_start_range_inserts_rather_than_drops_patches(images):
    backbone = tiny_vit(depth=4)
    model = vptune.create(backbone, "vpt-deep", 2, num_prompts=3, deep_blocks=(3, 4)).eval()
    tokens = vit_tokens(backbone, images, model.prompt)
    assert tokens.shape[1] == 1 + 3 + backbone.patch_embed.num_patches
    expected = reference_logits(backbone, model.prompt.embeddings, model.head, 2, 3)(images)
    torch.testing.assert_close(model(images), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method,blocks_count", [("vpt-shallow", 1), ("vpt-deep", 3)])
def test_trainable_count_is_paper_arithmetic(method, blocks_count):
    model = vptune.create(tiny_vit(), method, 10, num_prompts=6)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert model.prompt.embeddings.shape == (blocks_count, 6, 64)
    assert trainable == blocks_count * 6 * 64 + 64 * 10 + 10


@pytest.mark.slow
def test_vit_base_prompt_counts_match_paper():
    deep = vptune.create("vit_base_patch16_224", "vpt-deep", 10, num_prompts=50, pretrained=False)
    shallow = vptune.create(deep.backbone, "vpt-shallow", 10, num_prompts=50)
    assert deep.prompt.embeddings.numel() == 460_800
    assert shallow.prompt.embeddings.numel() == 38_400
    assert sum(p.numel() for p in deep.parameters() if p.requires_grad) == 468_490


def test_prompt_init_uses_patch_and_dim_bound():
    model = vptune.create(tiny_vit(), "vpt-deep", 2, num_prompts=200)
    bound = math.sqrt(6.0 / (3 * 8 * 8 + 64))
    values = model.prompt.embeddings
    assert values.abs().max() <= bound and values.abs().max() > 0.9 * bound


def test_projection_maps_prompt_dim_to_width(images):
    model = vptune.create(tiny_vit(), "vpt-deep", 2, num_prompts=4, prompt_dim=16)
    assert model.prompt.embeddings.shape == (3, 4, 16)
    assert model.prompt.proj.weight.shape == (64, 16)
    assert model(images).shape == (3, 2)


def test_dropout_defaults_and_backbone_stays_in_eval():
    deep = vptune.create(tiny_vit(), "vpt-deep", 2)
    shallow = vptune.create(tiny_vit(), "vpt-shallow", 2)
    assert deep.prompt.dropout.p == 0.1 and shallow.prompt.dropout.p == 0.0
    deep.train()
    assert deep.prompt.training and deep.head.training
    assert not any(m.training for m in deep.backbone.modules())


@pytest.mark.parametrize("location,tokens_added", [("add", 0), ("prepend-pixel", 4), ("concat-channel", 0)])
def test_location_ablations_run_and_train_their_tensors(location, tokens_added, images):
    model = vptune.create(tiny_vit(), "vpt-shallow", 3, num_prompts=4, location=location)
    assert model.prompt.num_prompts == tokens_added
    model(images).sum().backward()
    assert model.prompt.embeddings.grad is not None and model.prompt.embeddings.grad.abs().sum() > 0


def test_add_location_has_one_prompt_per_patch():
    model = vptune.create(tiny_vit(), "vpt-deep", 3, location="add")
    assert model.prompt.embeddings.shape == (3, 16, 64)


@pytest.mark.parametrize("output", ["image-pool", "prompt-pool", "global-pool"])
def test_output_ablations_read_the_right_tokens(output, images):
    backbone = tiny_vit()
    model = vptune.create(backbone, "vpt-shallow", 3, num_prompts=4, output=output).eval()
    x = backbone.norm(backbone.blocks(torch.cat([
        backbone._pos_embed(backbone.patch_embed(images))[:, :1],
        model.prompt.embeddings.expand(3, -1, -1),
        backbone._pos_embed(backbone.patch_embed(images))[:, 1:],
    ], dim=1)))
    parts = {"image-pool": x[:, 5:], "prompt-pool": x[:, 1:5], "global-pool": x[:, 1:]}
    torch.testing.assert_close(model.embed(images), parts[output].mean(1), atol=1e-5, rtol=0)


def test_average_pool_backbone_never_averages_prompts(images):
    backbone = tiny_vit(class_token=False, global_pool="avg", fc_norm=True)
    model = vptune.create(backbone, "vpt-shallow", 3, num_prompts=4).eval()
    tokens = backbone.norm(backbone.blocks(torch.cat([
        model.prompt.embeddings.expand(3, -1, -1), backbone._pos_embed(backbone.patch_embed(images))
    ], dim=1)))
    torch.testing.assert_close(model.embed(images), backbone.fc_norm(tokens[:, 4:].mean(1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("options,message", [
    ({"num_prompts": -1}, "num_prompts"),
    ({"deep_blocks": (0, 2)}, "deep_blocks"),
    ({"deep_blocks": (2, 9)}, "deep_blocks"),
    ({"location": "middle"}, "location"),
    ({"output": "max"}, "output"),
    ({"prompts": 3}, "no option prompts"),
    ({"location": "prepend-pixel"}, "vpt-shallow"),
])
def test_bad_options_are_rejected(options, message):
    with pytest.raises(MethodError, match=message):
        vptune.create(tiny_vit(), "vpt-deep", 2, **options)


def test_unknown_method_suggests_a_name():
    with pytest.raises(MethodError, match="did you mean vpt-deep"):
        vptune.create(tiny_vit(), "vpt-dep", 2)


@pytest.mark.parametrize("method,location,output", [
    ("vpt-shallow", "add", "cls"),
    ("vpt-deep", "add", "global-pool"),
    ("vpt-shallow", "prepend-pixel", "cls"),
    ("vpt-shallow", "prepend-pixel", "prompt-pool"),
    ("vpt-shallow", "concat-channel", "cls"),
    ("vpt-shallow", "concat-channel", "image-pool"),
    ("vpt-deep", "prepend", "image-pool"),
    ("vpt-deep", "prepend", "prompt-pool"),
    ("vpt-deep", "prepend", "global-pool"),
])
def test_location_and_output_ablations_match_an_independent_forward(method, location, output, images):
    backbone = tiny_vit()
    model = vptune.create(backbone, method, 3, num_prompts=4, location=location, output=output).eval()
    with torch.no_grad():
        model.prompt.embeddings.normal_(std=0.5)  # far from the init, so every prompt counts
        expected = reference_features(backbone, images, model.prompt.embeddings, location=location, output=output,
                                      first=model.prompt.first_block, last=model.prompt.last_block)
        torch.testing.assert_close(model.embed(images), expected, atol=1e-5, rtol=0)
