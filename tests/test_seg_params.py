"""Segmentation parameter accounting: SETR-PUP on ViT-L reproduces the paper's Table 3 (ADE20K) column."""

from __future__ import annotations

import pytest
import torch

import vptune
from vptune.accounting import storage_report
from vptune.cli.main import main

from conftest import tiny_vit

# ViT-L/16: width, depth; SETR's decoder channels; ADE20K classes.
WIDTH, DEPTH, CHANNELS, CLASSES = 1024, 24, 256, 150


def up_decoder_params(convs: int, kernel: int, width: int = WIDTH, channels: int = CHANNELS) -> int:
    """mmsegmentation's SETRUPHead: LayerNorm, bias-free convs each with a BatchNorm, 1x1 classifier with bias."""
    norm = 2 * width
    first = kernel * kernel * width * channels + 2 * channels
    rest = (convs - 1) * (kernel * kernel * channels * channels + 2 * channels)
    return norm + first + rest + channels * CLASSES + CLASSES


PUP = up_decoder_params(4, 3) + 3 * up_decoder_params(2, 3)  # main decoder + three training-only ones
# Every bias a segmentation model reads: per block qkv (3C), proj, norm1, norm2, fc2 (C each), fc1 (4C); patch embedding.
BIASES = DEPTH * 11 * WIDTH + WIDTH
PROMPTS = DEPTH * 10 * WIDTH


@pytest.fixture(scope="module")
def vit_large_reports() -> dict[str, object]:
    return {
        method: storage_report("vit_large_patch16_384", method, num_classes=CLASSES, head="setr-pup", **options)
        for method, options in [("linear", {}), ("bias", {}), ("vpt-deep", {"num_prompts": 10}),
                                ("vpt-deep+bias", {"num_prompts": 10})]
    }


@pytest.mark.parametrize("method,expected,paper", [
    ("linear", PUP, 13.18e6),
    ("bias", PUP + BIASES, 13.46e6),
    ("vpt-deep", PUP + PROMPTS, 13.43e6),
])
def test_setr_pup_on_vit_large_matches_the_paper(vit_large_reports, method, expected, paper):
    report = vit_large_reports[method]
    assert report.backbone_params == 303_690_752
    assert report.head_params == PUP == 13_143_640
    assert report.tuned_params == expected
    assert abs(report.tuned_params - paper) / paper < 0.01


def test_vpt_plus_bias_adds_prompts_and_biases(vit_large_reports):
    # The paper's 15.79M is not prompts + biases of 10 tokens (13.66M); see docs/segmentation.md.
    assert vit_large_reports["vpt-deep+bias"].tuned_params == PUP + BIASES + PROMPTS


def test_head_only_without_aux_decoders_is_far_from_the_paper():
    report = storage_report("vit_large_patch16_384", "linear", num_classes=CLASSES, head="setr-pup",
                            head_options={"aux_blocks": []})
    assert report.tuned_params == up_decoder_params(4, 3) == 4_171_414


def test_setr_naive_counts_like_mmsegmentation():
    report = storage_report("vit_large_patch16_384", "linear", num_classes=CLASSES, head="setr-naive")
    assert report.tuned_params == up_decoder_params(1, 1) + 3 * up_decoder_params(2, 1)


def test_accounting_counts_a_real_model_and_its_file(tmp_path):
    report = storage_report("vit_tiny_patch16_224", "vpt-deep+bias", img_size=32, num_classes=7,
                            head="setr-pup", head_options={"channels": 8}, num_prompts=3)
    model = vptune.create("vit_tiny_patch16_224", "vpt-deep+bias", 7, pretrained=False, img_size=32,
                          head="setr-pup", head_options={"channels": 8}, num_prompts=3)
    path = vptune.save(model, tmp_path / "task.safetensors")
    assert report.bytes_per_task == path.stat().st_size
    assert report.tuned_params == sum(p.numel() for p in model.trainable_parameters().values())
    assert report.head_params == sum(p.numel() for p in model.head.parameters())
    assert all(not p.is_meta for p in model.parameters()) and isinstance(model.head.decode.norm.weight, torch.Tensor)


def test_params_command_takes_head_and_head_options(capsys):
    code = main(["params", "--backbone", "vit_large_patch16_384", "--num-classes", "150", "--method", "linear",
                 "--head", "setr-pup", "--head-option", "channels=256"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{PUP:,} parameters, {PUP:,} of them the 150-class head setr-pup (channels=256" in out
    assert main(["params", "--backbone", "vit_large_patch16_384", "--method", "linear",
                 "--head", "setr-pupp"]) == 1
    err = capsys.readouterr().err
    assert "did you mean setr-pup" in err and err.strip().count("\n") == 0
    assert main(["params", "--backbone", "vit_tiny_patch16_224", "--img-size", "32", "--method", "linear",
                 "--head", "setr-pup", "--head-option", "channels"]) == 1
    assert "--head-option takes KEY=VALUE" in capsys.readouterr().err


def test_tiny_head_counts_follow_the_formula():
    model = vptune.create(tiny_vit(), "linear", CLASSES, head="setr-pup", head_options={"channels": 16})
    expected = up_decoder_params(4, 3, 64, 16) + 3 * up_decoder_params(2, 3, 64, 16)
    assert sum(p.numel() for p in model.trainable_parameters().values()) == expected
