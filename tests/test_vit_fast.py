"""The row-saving prompted forward equals the plain loop: outputs, gradients, switches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block, ParallelScalingBlock, ResPostBlock

import vptune
from vptune.model import TunedModel
from vptune.prompts.vit import vit_tokens
from vptune.prompts.vit_fast import attention, block_forward_rows, handles_rows

from conftest import VARIANTS, tiny_vit
from reference_vpt import plain_features

RANGES = {"shallow": ("vpt-shallow", None), "deep": ("vpt-deep", None), "deep-1-2": ("vpt-deep", (1, 2)), "deep-2-3": ("vpt-deep", (2, 3))}
BACKBONES = {**VARIANTS, "qk-norm": dict(qk_norm=True, scale_attn_norm=True, init_values=0.5)}


def shaken(backbone: torch.nn.Module) -> torch.nn.Module:
    """`backbone` with norm, layer-scale and bias values moved off their identity init.

    Fresh timm norms are (1, 0) and DINOv2 layer scale is 1e-5, which would let a wrong
    row hide; random values make every row of every block count.
    """
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, param in backbone.named_parameters():
            if param.dim() == 1:
                base = 1.0 if name.endswith(("weight", "gamma")) else 0.0
                param.copy_(base + 0.3 * torch.randn(param.shape, generator=generator))
    return backbone


def build(backbone_name: str, range_name: str, depth: int = 4, **options) -> TunedModel:
    method, blocks = RANGES[range_name]
    backbone = shaken(tiny_vit(depth=depth, **BACKBONES[backbone_name]))
    if blocks:
        options["deep_blocks"] = blocks
    return vptune.create(backbone, method, 5, num_prompts=4, **options)


def fast_and_plain(model: TunedModel, images: torch.Tensor, seed: int = 0) -> tuple[dict, dict]:
    """Logits and gradients (prompts, head) of the model's forward and of the plain loop."""
    weights = torch.randn(images.shape[0], model.num_classes, generator=torch.Generator().manual_seed(3))
    results = []
    for forward in (model, lambda x: model.head(plain_features(model.backbone, x, model.prompt, model.output))):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)  # the same prompt-dropout masks for both
        logits = forward(images)
        (logits * weights).sum().backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
        results.append({"logits": logits.detach(), **grads})
    return results[0], results[1]


def assert_same(fast: dict, plain: dict) -> None:
    assert fast.keys() == plain.keys() and "prompt.embeddings" in fast
    for name in fast:
        torch.testing.assert_close(fast[name], plain[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("range_name", sorted(RANGES))
@pytest.mark.parametrize("backbone_name", sorted(BACKBONES))
def test_outputs_and_gradients_match_plain_loop(backbone_name, range_name, images):
    model = build(backbone_name, range_name).eval()
    assert_same(*fast_and_plain(model, images))


@pytest.mark.parametrize("range_name", ["shallow", "deep", "deep-2-3"])
def test_training_mode_with_prompt_dropout_matches_plain_loop(range_name, images):
    model = build("dinov2-registers", range_name, prompt_dropout=0.3).train()
    fast, plain = fast_and_plain(model, images, seed=7)
    assert_same(fast, plain)
    eval_logits = model.eval()(images)
    assert not torch.allclose(fast["logits"], eval_logits)  # dropout did act


@pytest.mark.parametrize("output", ["image-pool", "prompt-pool", "global-pool"])
def test_output_ablations_match_plain_loop(output, images):
    model = build("plain", "deep-2-3", output=output).eval()
    assert_same(*fast_and_plain(model, images))


@pytest.mark.parametrize("location", ["add", "prepend-pixel", "concat-channel"])
def test_locations_match_plain_loop(location, images):
    model = build("plain", "shallow", location=location).eval()
    assert_same(*fast_and_plain(model, images))


def test_projected_prompts_match_plain_loop(images):
    model = build("clip-prenorm", "deep", prompt_dim=16).eval()
    assert_same(*fast_and_plain(model, images))


def test_replaced_prompts_and_unread_rows_skip_the_mlp(images):
    model = build("dinov2-registers", "deep").eval()
    rows = []
    hooks = [b.mlp.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[1])) for b in model.backbone.blocks]
    model(images)
    for hook in hooks:
        hook.remove()
    image_rows = 5 + model.backbone.patch_embed.num_patches  # [CLS], 4 registers, patches
    assert rows == [image_rows, image_rows, image_rows, 1]


@pytest.mark.parametrize("block_fn,handled", [(Block, True), (ParallelScalingBlock, False), (ResPostBlock, False)])
def test_block_rows_equal_the_whole_blocks_rows(block_fn, handled):
    block = shaken(tiny_vit(block_fn=block_fn, qk_norm=True, init_values=0.5)).blocks[0]
    x, prompts = torch.randn(2, 9, 64), torch.randn(2, 3, 64)
    assert handles_rows(block) == handled
    whole = block(torch.cat([x[:, :2], prompts, x[:, 2:]], dim=1))
    expected = torch.cat([whole[:, :2], whole[:, 5:]], dim=1)[:, 1:4]
    torch.testing.assert_close(block_forward_rows(block, x, slice(1, 4), prompts, 2), expected, atol=1e-5, rtol=0)


def test_training_blocks_run_whole():
    block = tiny_vit().blocks[0]
    assert handles_rows(block)
    assert not handles_rows(block.train())


@pytest.mark.parametrize("range_name", ["shallow", "deep"])
def test_checkpointing_gives_identical_gradients(range_name, images):
    model = build("dinov2-registers", range_name).train()
    grads = []
    for checkpoint in (False, True):
        model.set_grad_checkpointing(checkpoint)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        model(images).square().sum().backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("backbone_name", ["plain", "dinov2-registers"])
def test_bf16_autocast_forward_is_close(backbone_name, images):
    model = build(backbone_name, "deep").eval()
    expected = model(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images)
        logits.float().sum().backward()
    assert model.prompt.embeddings.grad is not None
    assert (logits.float() - expected).norm() / expected.norm() < 3e-2


def test_cpu_bf16_attention_runs_in_fp32_only_under_autocast():
    q, k, v = (torch.randn(2, 3, 5, 8).to(torch.bfloat16) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q, k, v, 0.25)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q.float(), k.float(), v.float(), scale=0.25),
                               atol=0, rtol=0)
    assert attention(q, k, v, 0.25).dtype == torch.bfloat16  # no autocast: the caller's dtype is kept


@pytest.mark.parametrize("method", ["lora", "ssf"])
def test_blocks_with_wrapped_or_hooked_qkv_run_whole(method, images):
    # The row-saving block splits qkv's weight itself, so LoRA layers and SSF hooks need the plain block.
    model = vptune.create(shaken(tiny_vit()), method, 5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and not name.startswith("head"):
                param.add_(0.5 * torch.randn(param.shape, generator=torch.Generator().manual_seed(4)))
    assert not any(handles_rows(block) for block in model.backbone.blocks)
    with torch.no_grad():
        tokens = vit_tokens(model.backbone, images, None)
        torch.testing.assert_close(tokens, model.backbone.forward_features(images))
