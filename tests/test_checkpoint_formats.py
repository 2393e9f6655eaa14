"""User checkpoints in the formats the paper's backbones come in, loaded strictly."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

import vptune
from vptune.errors import BackboneError

ARCH = "vit_tiny_patch16_224"


def source_vit() -> torch.nn.Module:
    torch.manual_seed(3)
    return timm.create_model(ARCH, img_size=32, num_classes=0)


def assert_same_weights(loaded: torch.nn.Module, source: torch.nn.Module) -> None:
    expected = source.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, expected[name], atol=0, rtol=0, msg=name)


def google_npz(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's weights under the names and layouts of Google's ImageNet-21k ViT files."""
    heads = model.blocks[0].attn.num_heads
    dim = model.embed_dim

    def n(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy()

    w = {
        "embedding/kernel": n(model.patch_embed.proj.weight.permute(2, 3, 1, 0)),
        "embedding/bias": n(model.patch_embed.proj.bias),
        "cls": n(model.cls_token),
        "Transformer/posembed_input/pos_embedding": n(model.pos_embed),
        "Transformer/encoder_norm/scale": n(model.norm.weight),
        "Transformer/encoder_norm/bias": n(model.norm.bias),
    }
    for i, block in enumerate(model.blocks):
        p = f"Transformer/encoderblock_{i}/"
        mha = p + "MultiHeadDotProductAttention_1/"
        w[p + "LayerNorm_0/scale"], w[p + "LayerNorm_0/bias"] = n(block.norm1.weight), n(block.norm1.bias)
        w[p + "LayerNorm_2/scale"], w[p + "LayerNorm_2/bias"] = n(block.norm2.weight), n(block.norm2.bias)
        for name, weight, bias in zip(("query", "key", "value"), block.attn.qkv.weight.chunk(3),
                                      block.attn.qkv.bias.chunk(3)):
            w[mha + f"{name}/kernel"] = n(weight.T.reshape(dim, heads, -1))
            w[mha + f"{name}/bias"] = n(bias.reshape(heads, -1))
        w[mha + "out/kernel"] = n(block.attn.proj.weight.reshape(dim, heads, -1).permute(1, 2, 0))
        w[mha + "out/bias"] = n(block.attn.proj.bias)
        for r, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
            w[p + f"MlpBlock_3/Dense_{r}/kernel"] = n(fc.weight.T)
            w[p + f"MlpBlock_3/Dense_{r}/bias"] = n(fc.bias)
    return w


def test_google_npz_loads_exactly(tmp_path):
    source = source_vit()
    path = tmp_path / "ViT-Ti_16.npz"
    np.savez(path, **google_npz(source))
    model = vptune.create(str(path), "vpt-deep", 3, arch=ARCH, img_size=32)
    assert_same_weights(model.backbone, source)


def test_google_npz_with_missing_tensor_is_refused(tmp_path):
    weights = google_npz(source_vit())
    del weights["Transformer/encoderblock_1/LayerNorm_2/scale"]
    path = tmp_path / "broken.npz"
    np.savez(path, **weights)
    with pytest.raises(BackboneError, match="LayerNorm_2/scale"):
        vptune.create(str(path), "linear", 3, arch=ARCH, img_size=32)


def mae_checkpoint(source: torch.nn.Module) -> dict:
    state = dict(source.state_dict())
    state["mask_token"] = torch.zeros(1, 1, 96)
    state["decoder_embed.weight"] = torch.zeros(96, 192)
    state["decoder_pred.weight"] = torch.zeros(768, 96)
    return {"model": state, "epoch": 1599}


def test_mae_decoder_is_refused_unless_allowed(tmp_path):
    source = source_vit()
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save(mae_checkpoint(source), path)
    with pytest.raises(BackboneError, match="unexpected mask_token, decoder_embed.weight"):
        vptune.create(str(path), "linear", 3, arch=ARCH, img_size=32)
    model = vptune.create(str(path), "linear", 3, arch=ARCH, img_size=32, allow_keys=("decoder_", "mask_token"))
    assert_same_weights(model.backbone, source)


def test_mae_average_pool_head_never_averages_prompts(tmp_path):
    source = source_vit()
    path = tmp_path / "mae.pth"
    torch.save(mae_checkpoint(source), path)
    torch.manual_seed(0)
    backbone = timm.create_model(ARCH, img_size=32, num_classes=0, global_pool="avg", fc_norm=True)
    from vptune.backbone_checkpoints import load_checkpoint_into

    load_checkpoint_into(backbone, path, allow_keys=("decoder_", "mask_token", "fc_norm.", "norm."))
    model = vptune.create(backbone, "vpt-shallow", 3, num_prompts=4).eval()
    images = torch.randn(2, 3, 32, 32)
    x = backbone._pos_embed(backbone.patch_embed(images))
    tokens = backbone.norm(backbone.blocks(torch.cat([x[:, :1], model.prompt.embeddings.expand(2, -1, -1), x[:, 1:]], 1)))
    expected = backbone.fc_norm(tokens[:, 5:].mean(1))
    torch.testing.assert_close(model.embed(images), expected, atol=1e-5, rtol=0)


def moco_v3_checkpoint(source: torch.nn.Module) -> dict:
    state = {}
    for name, value in source.state_dict().items():
        state[f"module.base_encoder.{name}"] = value
        state[f"module.momentum_encoder.{name}"] = value.clone()
    state["module.base_encoder.head.0.weight"] = torch.zeros(256, 192)
    state["module.predictor.0.weight"] = torch.zeros(256, 256)
    return {"epoch": 300, "arch": "vit_small", "state_dict": state, "optimizer": {}}


def test_moco_v3_loads_base_encoder_and_refuses_training_parts_unless_allowed(tmp_path):
    source = source_vit()
    path = tmp_path / "vit-s-300ep.pth.tar"
    torch.save(moco_v3_checkpoint(source), path)
    with pytest.raises(BackboneError, match=r"unexpected momentum_encoder\.\* \(150 keys\), head.0.weight, predictor.0.weight"):
        vptune.create(str(path), "linear", 3, arch=ARCH, img_size=32)
    allowed = ("head.", "momentum_encoder.", "predictor.")
    model = vptune.create(str(path), "vpt-deep", 3, arch=ARCH, img_size=32, allow_keys=allowed)
    assert_same_weights(model.backbone, source)


def test_unreadable_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="cannot read checkpoint"):
        vptune.create(str(path), "linear", 3, arch=ARCH, img_size=32)
