"""E2VPT: key-value prompts in every attention plus deep visual prompts, against a forward written from timm's pieces."""

from __future__ import annotations

import pytest
import torch

import vptune
from vptune.errors import MethodError

from conftest import tiny_vit
from test_conv import tiny_resnet
from test_swin import tiny_swin


def reference_features(vit: torch.nn.Module, images: torch.Tensor, visual: torch.Tensor, key_value: torch.Tensor
                       ) -> torch.Tensor:
    """The final-norm [CLS] of a plain ViT where block i takes visual prompts `visual[i]` (M, C) after [CLS],
    replacing the previous block's, and attends over `[k; P_K]`, `[v; P_V]` with `key_value[i] = (P_K, P_V)`."""
    batch, num_prompts = images.shape[0], visual.shape[1]
    x = vit.patch_embed(images)
    x = torch.cat([vit.cls_token.expand(batch, -1, -1), x], dim=1) + vit.pos_embed
    x = torch.cat([x[:, :1], x[:, :num_prompts], x[:, 1:]], dim=1)  # slots the first block's prompts fill
    for i, block in enumerate(vit.blocks):
        x = torch.cat([x[:, :1], visual[i].expand(batch, -1, -1), x[:, 1 + num_prompts:]], dim=1)
        attn = block.attn
        heads, width = attn.num_heads, x.shape[-1]
        q, k, v = (block.norm1(x) @ attn.qkv.weight.T + attn.qkv.bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(batch, -1, heads, width // heads).transpose(1, 2) for t in (q, k, v))
        k = torch.cat([k, key_value[i, 0].expand(batch, -1, -1, -1)], dim=2)
        v = torch.cat([v, key_value[i, 1].expand(batch, -1, -1, -1)], dim=2)
        weights = torch.softmax(q @ k.transpose(-2, -1) * (width // heads) ** -0.5, dim=-1)
        x = x + attn.proj((weights @ v).transpose(1, 2).reshape(batch, -1, width))
        x = x + block.mlp(block.norm2(x))
    return vit.norm(x)[:, 0]


def trained_like(model: vptune.model.TunedModel) -> vptune.model.TunedModel:
    with torch.no_grad():
        generator = torch.Generator().manual_seed(3)
        for p in model.trainable_parameters().values():
            p.add_(0.5 * torch.randn(p.shape, generator=generator))
    return model.eval()


@pytest.mark.parametrize("num_prompts,kv_prompts", [(3, 2), (1, 6)])
def test_forward_equals_attention_over_appended_keys_and_values(num_prompts, kv_prompts):
    model = trained_like(vptune.create(tiny_vit(), "e2vpt", 5, num_prompts=num_prompts, kv_prompts=kv_prompts))
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    prompt = model.prompt
    with torch.no_grad():
        expected = model.head(reference_features(model.backbone, images, prompt.embeddings, prompt.key_value))
        torch.testing.assert_close(model(images), expected, atol=1e-5, rtol=1e-5)


def mlp_rows(model: vptune.model.TunedModel) -> list[int]:
    """Token rows each block's MLP computes in one forward of `model`."""
    rows = []
    for block in model.backbone.blocks:
        block.mlp.register_forward_hook(lambda module, inputs, output: rows.append(inputs[0].shape[1]))
    with torch.no_grad():
        model.eval()(torch.randn(2, 3, 32, 32))
    return rows


def test_key_value_prompts_add_keys_not_rows():
    model = vptune.create(tiny_vit(), "e2vpt", 5, num_prompts=3, kv_prompts=4)
    depth, heads, head_dim = 3, 2, 32
    assert model.prompt.key_value.shape == (depth, 2, heads, 4, head_dim)
    assert model.prompt.embeddings.shape == (depth, 3, 64)
    # As VPT-Deep: replaced prompts give keys and values only, the last block computes [CLS] alone.
    assert mlp_rows(model) == mlp_rows(vptune.create(tiny_vit(), "vpt-deep", 5, num_prompts=3)) == [1 + 16, 1 + 16, 1]


def test_options_are_recorded_with_their_defaults():
    model = vptune.create(tiny_vit(), "e2vpt", 5)
    assert model.config["options"] == {"num_prompts": 10, "kv_prompts": 5, "prompt_dropout": 0.0, "prune": "none",
                                       "prune_fraction": 0.5, "segments": 16}


@pytest.mark.parametrize("builder", [tiny_swin, tiny_resnet])
def test_other_families_are_refused_in_one_line(builder):
    with pytest.raises(MethodError, match=r"^method 'e2vpt' needs a timm backbone of family ViT; .*$"):
        vptune.create(builder(), "e2vpt", 5)


def test_segments_must_divide_the_width():
    with pytest.raises(MethodError, match="segments 5 must divide the embedding width 64"):
        vptune.create(tiny_vit(), "e2vpt", 5, prune="segment", segments=5)
