"""Heads as a part of a task: the registry, segmentation on ViT patch tokens with every method, files."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import vptune
from vptune.cli.info import describe
from vptune.errors import HeadError, MethodError
from vptune.heads import available_heads, get_head
from vptune.methods import available_methods
from vptune.persistence import read_description
from vptune.tasks import TASK_TYPES
from vptune.prompts import vit_block_maps
from vptune.prompts.vit import VitPrompt

from conftest import VARIANTS, tiny_vit
from reference_vpt import plain_block_outputs

SEGMENTATION_HEADS = [name for name in available_heads() if get_head(name).task_type == "segmentation"]
# Methods whose tensors act on pooled features only, so they cannot serve a segmentation head.
POOLED_ONLY = {"sidetune": HeadError, "mlp-k": MethodError}
NUMBERED = {"partial-k": "partial-1", "mlp-k": "mlp-3"}


def reference_maps(backbone, images, prompt, blocks):
    """Patch maps from the plain forward: prefix and prompt tokens dropped, reshaped to the grid."""
    outputs = plain_block_outputs(backbone, images, prompt)
    prefix = backbone.num_prefix_tokens
    grid = images.shape[-1] // backbone.patch_embed.patch_size[0]
    maps = []
    for index in blocks:
        x, inserted = outputs[index]
        patches = x[:, prefix + inserted:]
        assert patches.shape[1] == grid * grid
        maps.append(patches.transpose(1, 2).reshape(x.shape[0], -1, grid, grid))
    return maps


def test_every_head_is_registered_with_a_task_type():
    assert {"linear", "mlp", "setr-pup", "setr-naive"} <= set(available_heads())
    for name in available_heads():
        assert get_head(name).task_type in {kind.heads for kind in TASK_TYPES}


def test_unknown_head_suggests_a_name():
    with pytest.raises(HeadError, match="did you mean setr-pup"):
        get_head("setr-pupp")
    with pytest.raises(HeadError, match="has no option"):
        vptune.create(tiny_vit(), "linear", 3, head="setr-pup", head_options={"chanels": 8})
    with pytest.raises(HeadError, match="block 9 is not a block number from 1 to 3"):
        vptune.create(tiny_vit(), "linear", 3, head="setr-pup", head_options={"aux_blocks": [1, 9]})


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_block_maps_match_timm_intermediates(variant, images):
    backbone = tiny_vit(**VARIANTS[variant])
    with torch.no_grad():
        maps = vit_block_maps(backbone, images, None, [2, 0, 1])
        expected = backbone.forward_intermediates(
            images, indices=[0, 1, 2], norm=False, output_fmt="NCHW", intermediates_only=True
        )
    for got, want in zip(maps, [expected[2], expected[0], expected[1]]):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("first,last,location", [(0, 2, "prepend"), (0, 0, "prepend"), (1, 1, "prepend"),
                                                 (0, 1, "prepend"), (0, 2, "add"), (0, 0, "prepend-pixel")])
def test_block_maps_drop_prompts_like_the_plain_forward(first, last, location, images):
    backbone = tiny_vit(**VARIANTS["dinov2-registers"])
    prompt = VitPrompt(backbone, num_prompts=backbone.patch_embed.num_patches if location == "add" else 3,
                       first_block=first, last_block=last, location=location).eval()
    with torch.no_grad():
        got = vit_block_maps(backbone, images, prompt, [0, 1, 2])
        expected = reference_maps(backbone, images, prompt, [0, 1, 2])
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def reference_up_decoder(decoder, x, size, scale):
    """mmsegmentation's SETRUPHead forward, op by op (BatchNorm in eval mode)."""
    n, c, h, w = x.shape
    x = F.layer_norm(x.reshape(n, c, h * w).transpose(1, 2), (c,), decoder.norm.weight, decoder.norm.bias, 1e-6)
    x = x.transpose(1, 2).reshape(n, c, h, w)
    for conv, bn, _, _ in decoder.stages:
        x = F.conv2d(x, conv.weight, padding=conv.padding)
        x = (x - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        x = F.relu(x * bn.weight[:, None, None] + bn.bias[:, None, None])
        x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    x = F.conv2d(x, decoder.classifier.weight, decoder.classifier.bias)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("head,main,aux", [("setr-pup", (4, 2, 3), (2, 4, 3)), ("setr-naive", (1, 4, 1), (2, 4, 1))])
def test_setr_decoders_follow_mmsegmentation(head, main, aux, images):
    model = vptune.create(tiny_vit(depth=24, embed_dim=32), "linear", 5, head=head,
                          head_options={"channels": 16}).eval()
    # ViT-L's blocks 10, 15, 20 of 24 (1-based) for the auxiliary decoders, the last for the main one.
    assert model.config["head"] == {"kind": head, "channels": 16, "block": 24, "aux_blocks": [10, 15, 20],
                                    "aux_weight": 0.4}
    decoders = [(model.head.decode, main)] + [(d, aux) for d in model.head.aux]
    for decoder, (convs, scale, kernel) in decoders:
        assert len(decoder.stages) == convs
        assert all(stage[0].kernel_size == (kernel, kernel) and stage[0].bias is None for stage in decoder.stages)
        assert all(stage[3].scale_factor == scale for stage in decoder.stages)
    with torch.no_grad():
        torch.nn.init.normal_(model.head.decode.classifier.weight)
        logits, aux_logits = model(images, aux=True)
        maps = vit_block_maps(model.backbone, images, None, [23, 9, 14, 19])
        expected = [reference_up_decoder(d, m, (32, 32), s) for (d, (_, s, _)), m in zip(decoders, maps)]
    torch.testing.assert_close(logits, expected[0])
    for got, want in zip(aux_logits, expected[1:]):
        torch.testing.assert_close(got, want)
    assert logits.shape == (3, 5, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), logits)


def test_aux_blocks_scale_with_depth():
    for depth, expected in [(12, [5, 8, 10]), (2, [1, 1, 2])]:
        model = vptune.create(tiny_vit(depth=depth), "linear", 3, head="setr-naive")
        assert model.config["head"]["aux_blocks"] == expected
        assert model.head.blocks(aux=True) == (depth - 1, *(b - 1 for b in expected))
    none = vptune.create(tiny_vit(), "linear", 3, head="setr-pup", head_options={"aux_blocks": []})
    assert len(none.head.aux) == 0 and none.head.blocks(aux=True) == (2,)


@pytest.mark.parametrize("method", available_methods())
@pytest.mark.parametrize("head", SEGMENTATION_HEADS)
def test_every_method_trains_with_every_segmentation_head(method, head, images):
    name = NUMBERED.get(method, method)
    options = {"num_prompts": 2} if name.startswith("vpt") else {}
    if method in POOLED_ONLY:
        with pytest.raises(POOLED_ONLY[method]):
            vptune.create(tiny_vit(), name, 4, head=head, head_options={"channels": 8}, **options)
        return
    model = vptune.create(tiny_vit(), name, 4, head=head, head_options={"channels": 8}, **options).train()
    assert model.task_type == "segmentation" and model.head.training
    logits, aux = model(images, aux=True)
    assert logits.shape == (3, 4, 32, 32) and [a.shape for a in aux] == [logits.shape] * 3
    (logits.sum() + sum(a.sum() for a in aux)).backward()
    trainable = model.trainable_parameters()
    assert any(n.startswith("head.decode.") for n in trainable) and any(n.startswith("head.aux.") for n in trainable)
    for name_, param in trainable.items():
        assert param.grad is not None, name_
    # The head's BatchNorm statistics are part of the task.
    assert "head.decode.stages.0.1.running_mean" in model.tuned_state_dict()


def test_vpt_deep_segmentation_matches_the_plain_prompted_forward(images):
    model = vptune.create(tiny_vit(), "vpt-deep+bias", 4, num_prompts=3, head="setr-pup",
                          head_options={"channels": 8}).eval()
    with torch.no_grad():
        logits, aux = model(images, aux=True)
        maps = reference_maps(model.backbone, images, model.prompt, [2, 0, 1, 2])
        expected = model.head(dict(zip([2, 0, 1], maps[:3])), (32, 32), aux=True)
    torch.testing.assert_close(logits, expected[0])
    for got, want in zip(aux, expected[1]):
        torch.testing.assert_close(got, want)


def test_segmentation_refuses_pooled_outputs_and_non_vits():
    with pytest.raises(HeadError, match="leave output at cls"):
        vptune.create(tiny_vit(), "vpt-deep", 3, head="setr-pup", output="image-pool")
    import timm

    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=64, embed_dim=32,
                             depths=(2, 2), num_heads=(2, 4), window_size=4, num_classes=0)
    with pytest.raises(HeadError, match="reads ViT patch tokens"):
        vptune.create(swin, "linear", 3, head="setr-naive")


def test_mlp_head_kind_and_method_agree():
    by_head = vptune.create(tiny_vit(), "linear", 3, head="mlp", head_options={"k": 2})
    by_method = vptune.create(tiny_vit(), "mlp-2", 3)
    assert by_head.config["head"] == by_method.config["head"] == {"kind": "mlp", "k": 2}
    assert [type(m) for m in by_head.head] == [type(m) for m in by_method.head]
    assert by_method.task_type == "classification"


def test_segmentation_file_round_trip(tmp_path, images):
    model = vptune.create(tiny_vit(), "vpt-deep", 4, num_prompts=2, head="setr-pup",
                          head_options={"channels": 8, "aux_blocks": [1]})
    model.train()
    model(images, aux=True)  # moves the BatchNorm statistics away from their start
    model.eval()
    path = vptune.save(model, tmp_path / "seg.safetensors")
    description = read_description(path)
    assert description["task_type"] == "segmentation"
    assert description["head"] == {"kind": "setr-pup", "channels": 8, "block": 3, "aux_blocks": [1],
                                   "aux_weight": 0.4}
    info = describe(path)
    assert (info["task_type"], info["head"]["kind"]) == ("segmentation", "setr-pup")
    restored = vptune.load(path, backbone=tiny_vit()).eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(images), model(images), atol=0, rtol=0)


def test_files_without_a_head_load_as_linear_classifiers(tmp_path, images):
    import json

    model = vptune.create(tiny_vit(), "vpt-shallow", 4, num_prompts=2)
    path = vptune.save(model, tmp_path / "old.safetensors")
    description = read_description(path)
    del description["task_type"], description["head"]
    save_file(load_file(str(path)), str(path), metadata={"vptune": json.dumps(description)})
    restored = vptune.load(path, backbone=tiny_vit()).eval()
    assert restored.task_type == "classification" and restored.head_kind == "linear"
    assert describe(path)["head"] == {"kind": "linear"}
    with torch.no_grad():
        torch.testing.assert_close(restored(images), model.eval()(images), atol=0, rtol=0)


def test_classification_servers_refuse_segmentation_tasks(tmp_path):
    from vptune.errors import TaskFileError, VptuneError

    model = vptune.create(tiny_vit(), "linear", 3, head="setr-naive", head_options={"channels": 4})
    path = vptune.save(model, tmp_path / "seg.safetensors")
    serving = vptune.MultiTask(tiny_vit())
    for task in (path, model):
        with pytest.raises(TaskFileError, match="segmentation task"):
            serving.add("seg", task)
    with pytest.raises(VptuneError, match="segmentation task"):
        vptune.Predictor(model)


def test_segmentation_with_gradient_checkpointing_gives_the_same_gradients(images):
    results = []
    for checkpointing in (False, True):
        model = vptune.create(tiny_vit(), "vpt-deep", 4, num_prompts=2, prompt_dropout=0.0, head="setr-pup",
                              head_options={"channels": 8}).eval()
        model.set_grad_checkpointing(checkpointing)
        logits, aux = model(images, aux=True)
        (logits.square().mean() + sum(a.square().mean() for a in aux)).backward()
        results.append((logits.detach(), model.prompt.embeddings.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
