"""Storage accounting: the paper's parameter arithmetic, exact file sizes, and `vptune params`."""

from __future__ import annotations

import pytest

import vptune
from vptune.accounting import storage_report
from vptune.cli.main import main
from vptune.errors import VptuneError

VIT_B = 85_798_656  # timm vit_base_patch16_224 without its classifier
HEAD = 768 * 100 + 100  # the report's default 100-class head


@pytest.mark.slow
@pytest.mark.parametrize("method,options,method_params,multiple", [
    # vpt-notes: deep N*p*d = 12*50*768. The paper's 1.18x sums prompt lengths chosen per
    # task (up to 200) and its own heads; p = 50 everywhere with 100-class heads gives 1.15x.
    ("vpt-deep", {"num_prompts": 50}, 460_800, 1.15),
    ("full", {}, VIT_B, 24.02),  # nothing shared: 24 copies of backbone and head
    ("linear", {}, 0, 1.02),
    ("bias", {}, 102_912, 1.05),  # 12 blocks x 8,448 biases + patch embedding + final norm
])
def test_vit_base_figures_follow_the_paper_arithmetic(method, options, method_params, multiple):
    report = storage_report("vit_base_patch16_224", method, tasks=24, **options)
    assert report.backbone_params == VIT_B
    assert (report.tuned_params, report.head_params) == (method_params + HEAD, HEAD)
    shared = 0 if method == "full" else VIT_B
    assert report.total_multiple == (shared + 24 * (method_params + HEAD)) / VIT_B
    assert round(report.total_multiple, 2) == multiple


@pytest.mark.parametrize("method,options", [
    ("vpt-deep", {"num_prompts": 5}),
    ("linear", {}),
    ("bias", {}),
    ("lora", {"rank": 2}),
    ("sidetune", {"width": 4}),
    ("partial-1", {}),
])
def test_bytes_per_task_is_the_size_vptune_save_writes(tmp_path, method, options):
    report = storage_report("vit_tiny_patch16_224", method, img_size=32, num_classes=7, **options)
    model = vptune.create("vit_tiny_patch16_224", method, 7, pretrained=False, img_size=32, **options)
    path = vptune.save(model, tmp_path / "task.safetensors")
    assert report.bytes_per_task == path.stat().st_size
    assert report.tuned_params == sum(p.numel() for p in model.trainable_parameters().values())


def test_partial_tuning_shares_the_backbone_and_full_does_not():
    partial = storage_report("vit_tiny_patch16_224", "partial-1", img_size=32, tasks=3)
    full = storage_report("vit_tiny_patch16_224", "full", img_size=32, tasks=3)
    assert partial.shares_backbone and not full.shares_backbone
    assert partial.stored_params == partial.backbone_params + 3 * partial.tuned_params
    assert full.stored_params == 3 * (full.backbone_params + full.head_params)


def test_tasks_must_be_positive():
    with pytest.raises(VptuneError, match="tasks must be"):
        storage_report("vit_tiny_patch16_224", "linear", img_size=32, tasks=0)


def test_params_command_prints_the_report(capsys):
    code = main([
        "params", "--backbone", "vit_tiny_patch16_224", "--img-size", "32", "--method", "vpt-deep",
        "--num-prompts", "5", "--tasks", "4", "--num-classes", "10",
    ])
    out = capsys.readouterr().out
    report = storage_report("vit_tiny_patch16_224", "vpt-deep", img_size=32, tasks=4, num_classes=10, num_prompts=5)
    assert code == 0
    assert f"{report.tuned_params:,} parameters, 1,930 of them the 10-class head" in out
    assert f"{report.bytes_per_task:,}" in out
    assert f"{report.total_multiple:.2f}x for 4 tasks" in out


def test_params_command_passes_generic_options(capsys):
    code = main([
        "params", "--backbone", "vit_tiny_patch16_224", "--img-size", "32", "--method", "adapter",
        "--option", "reduction=4",
    ])
    assert code == 0
    assert "adapter (reduction=4)" in capsys.readouterr().out


def test_params_command_reports_errors_in_one_line(capsys):
    code = main(["params", "--backbone", "vit_tiny_patch16_224", "--method", "adapter", "--option", "rank=4"])
    assert code == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
