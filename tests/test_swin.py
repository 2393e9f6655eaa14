"""Prompts in Swin windows: parity with timm, a per-window reference, stage and batch rules."""

from __future__ import annotations

import pytest
import timm
import torch

import vptune
from vptune.errors import MethodError
from vptune.prompts.swin import prompted_block

from conftest import zero_prompt_features

SWIN = dict(img_size=64, embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4, num_classes=0)


def tiny_swin(**overrides) -> torch.nn.Module:
    """A small random timm Swin: 16x16 then 8x8 patches in 4x4 windows, shifted every other block."""
    torch.manual_seed(0)
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **{**SWIN, **overrides}).eval()


@pytest.fixture
def swin_images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def reference_block(
    block, x: torch.Tensor, prompts: torch.Tensor, key_values=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One prompted Swin block written window by window, image by image, with explicit softmax.

    `key_values = (keys, values)`, each `(heads, Q, head_dim)`, are appended to every window's keys and
    values with no position bias and no mask (E2VPT)."""
    batch, height, width, channels = x.shape
    attn, (win_h, win_w), shift = block.attn, block.window_size, block.shift_size
    area, num_prompts = win_h * win_w, prompts.shape[1]
    normed, normed_prompts = block.norm1(x), block.norm1(prompts)
    shifted = torch.roll(normed, (-shift[0], -shift[1]), (1, 2))
    bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)]
    bias = bias.view(area, area, -1).permute(2, 0, 1)
    out, prompt_out = torch.zeros_like(x), torch.zeros_like(prompts)
    rows, cols = height // win_h, width // win_w
    for b in range(batch):
        for i in range(rows):
            for j in range(cols):
                where = (b, slice(i * win_h, (i + 1) * win_h), slice(j * win_w, (j + 1) * win_w))
                tokens = torch.cat([normed_prompts[b], shifted[where].reshape(area, channels)])
                q, k, v = attn.qkv(tokens).view(len(tokens), 3, attn.num_heads, -1).permute(1, 2, 0, 3)
                if key_values is not None:
                    k, v = torch.cat([k, key_values[0]], dim=1), torch.cat([v, key_values[1]], dim=1)
                extra = torch.zeros(attn.num_heads, len(tokens), k.shape[1])
                extra[:, num_prompts:, num_prompts:len(tokens)] = bias
                if block.attn_mask is not None:
                    extra[:, num_prompts:, num_prompts:len(tokens)] += block.attn_mask[i * cols + j]
                weights = torch.softmax(q @ k.transpose(-1, -2) * attn.scale + extra, dim=-1)
                result = attn.proj((weights @ v).transpose(0, 1).reshape(len(tokens), channels))
                prompt_out[b] += result[:num_prompts] / (rows * cols)
                out[where] = result[num_prompts:].view(win_h, win_w, channels)
    out = torch.roll(out, shift, (1, 2))
    tokens = torch.cat([prompts, x.reshape(batch, -1, channels)], 1)
    tokens = tokens + torch.cat([prompt_out, out.reshape(batch, -1, channels)], 1)
    tokens = tokens + block.mlp(block.norm2(tokens))
    return tokens[:, num_prompts:].reshape(x.shape), tokens[:, :num_prompts]


def reference_features(backbone, embeddings, images: torch.Tensor, deep: bool, key_values=None) -> torch.Tensor:
    """The paper's Swin VPT: prompts per block per stage (deep) or entering once (shallow),
    dropped at patch merging; the head pools the final-norm patch tokens. `key_values[s][j]`, when
    given, are the keys and values block j of stage s appends (E2VPT)."""
    x = backbone.patch_embed(images)
    for s, stage in enumerate(backbone.layers):
        x = stage.downsample(x)
        prompts = None
        for j, block in enumerate(stage.blocks):
            if s < len(embeddings) and (deep or j == 0):
                prompts = embeddings[s][j].expand(x.shape[0], -1, -1)
            if prompts is None:
                x = block(x)
            else:
                x, prompts = reference_block(block, x, prompts, None if key_values is None else key_values[s][j])
    return backbone.forward_head(backbone.norm(x), pre_logits=True)


@pytest.mark.parametrize("deep", [False, True], ids=["shallow", "deep"])
def test_zero_prompts_match_timm_features(deep, swin_images):
    backbone = tiny_swin()
    expected = backbone.forward_head(backbone.forward_features(swin_images), pre_logits=True)
    torch.testing.assert_close(zero_prompt_features(backbone, swin_images, deep), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("stage,block", [(0, 0), (0, 1), (1, 1)])
def test_prompted_block_matches_per_window_reference(stage, block):
    backbone = tiny_swin()
    swin_block = backbone.layers[stage].blocks[block]
    size, dim = (16, 32) if stage == 0 else (8, 64)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, size, size, dim, generator=generator)
    prompts = torch.randn(2, 3, dim, generator=generator)
    with torch.no_grad():
        got = prompted_block(swin_block, x, prompts)
        expected = reference_block(swin_block, x, prompts)
    assert swin_block.attn_mask is not None or block == 0  # shifted, masked windows are covered
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("method,deep", [("vpt-shallow", False), ("vpt-deep", True)])
def test_features_match_reference(method, deep, swin_images):
    backbone = tiny_swin()
    model = vptune.create(backbone, method, 5, num_prompts=3).eval()
    with torch.no_grad():
        expected = reference_features(backbone, list(model.prompt.embeddings), swin_images, deep)
        torch.testing.assert_close(model.embed(swin_images), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["vpt-shallow", "vpt-deep"])
def test_images_in_a_batch_do_not_share_prompts(method, swin_images):
    model = vptune.create(tiny_swin(), method, 5, num_prompts=3).eval()
    with torch.no_grad():
        together = model(swin_images)
        alone = torch.cat([model(image[None]) for image in swin_images])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_deep_prompts_per_block_per_stage_at_stage_width():
    deep = vptune.create(tiny_swin(), "vpt-deep", 5, num_prompts=4)
    shallow = vptune.create(tiny_swin(), "vpt-shallow", 5, num_prompts=4)
    assert [tuple(e.shape) for e in deep.prompt.embeddings] == [(2, 4, 32), (2, 4, 64)]
    assert [tuple(e.shape) for e in shallow.prompt.embeddings] == [(1, 4, 32)]
    trainable = sum(p.numel() for p in deep.trainable_parameters().values())
    assert trainable == 4 * (2 * 32 + 2 * 64) + 64 * 5 + 5
    assert deep.prompt.dropout.p == 0.1 and shallow.prompt.dropout.p == 0.0


def test_shallow_prompts_end_at_patch_merging(swin_images):
    backbone = tiny_swin()
    model = vptune.create(backbone, "vpt-shallow", 5, num_prompts=3).eval()
    seen = []
    hook = backbone.layers[1].downsample.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    before = model.embed(swin_images)
    hook.remove()
    assert seen == [(2, 16, 16, 32)]  # merging gets only the 16x16 patch grid
    with torch.no_grad():
        model.prompt.embeddings[0].add_(torch.randn_like(model.prompt.embeddings[0]))
    assert (before - model.embed(swin_images)).abs().max() > 1e-3


def test_last_stage_deep_prompts_change_features(swin_images):
    model = vptune.create(tiny_swin(), "vpt-deep", 5, num_prompts=3).eval()
    before = model.embed(swin_images)
    with torch.no_grad():
        model.prompt.embeddings[1][1].add_(torch.randn_like(model.prompt.embeddings[1][1]))
    assert (before - model.embed(swin_images)).abs().max() > 1e-3


def test_prompts_train_through_the_windows(swin_images):
    model = vptune.create(tiny_swin(), "vpt-deep", 5, num_prompts=3).eval()
    model(swin_images).sum().backward()
    for embeddings in model.prompt.embeddings:
        assert embeddings.grad is not None and (embeddings.grad.abs().sum(dim=(1, 2)) > 0).all()


@pytest.mark.parametrize("options,message", [
    ({"output": "image-pool"}, "use output='cls'"),
    ({"prompt_dim": 8}, "ViT options"),
    ({"deep_blocks": (1, 2)}, "ViT options"),
])
def test_vit_only_options_are_refused(options, message):
    with pytest.raises(MethodError, match=message):
        vptune.create(tiny_swin(), "vpt-deep", 5, **options)
