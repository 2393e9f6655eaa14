"""vfpt (Visual Fourier Prompt Tuning): the paper's forward on ViT and Swin, its stored tensors, mixed serving,
refusals, the CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import vptune
from vptune.accounting import storage_report
from vptune.cli.flags import methods_help
from vptune.cli.main import main
from vptune.engine.evaluate import load_run_model, run_config
from vptune.errors import CheckpointMismatchError, MethodError
from vptune.methods.vfpt import VfptOptions

from conftest import TINY_CLI, assert_one_line_error, tiny_vit
from test_conv import tiny_resnet
from test_multitask import BACKBONES, make_task, own_logits
from test_swin import reference_features, tiny_swin


def reference_logits(model, images: torch.Tensor, fourier: int, dropout=lambda p: p) -> torch.Tensor:
    """The paper's VFPT forward on a plain timm ViT, from timm's pieces alone.

    Block i sees `[CLS, Re(FFT2(P_i[:fourier])), P_i[fourier:], patches]` with `P_i` its prompts
    after `dropout`; the prompt outputs of block i are dropped before block i + 1.
    """
    backbone, embeddings = model.backbone, model.prompt.embeddings
    x = backbone.patch_embed(images)
    x = torch.cat([backbone.cls_token.expand(len(x), -1, -1), x], dim=1) + backbone.pos_embed
    previous = 0
    for block, prompts in zip(backbone.blocks, embeddings):
        prompts = dropout(prompts)
        spectrum = torch.fft.fft2(prompts[:fourier]).real if fourier else prompts[:0]  # fft2 takes no empty input
        prompts = torch.cat([spectrum, prompts[fourier:]])
        x = torch.cat([x[:, :1], prompts.expand(len(x), -1, -1), x[:, 1 + previous:]], dim=1)
        previous = len(prompts)
        x = x + block.ls1(block.attn(block.norm1(x)))
        x = x + block.ls2(block.mlp(block.norm2(x)))
    return F.linear(backbone.norm(x)[:, 0], model.head.weight, model.head.bias)


def randomised(model):
    """`model` with prompts and head far from their initial values."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.trainable_parameters().values():
            p.copy_(torch.randn(p.shape, generator=generator))
    return model


@pytest.mark.parametrize("num_prompts,fraction,fourier", [(4, 0.5, 2), (3, 1.0, 3), (5, 0.0, 0), (3, 0.5, 1),
                                                           (100, 0.29, 29)])
def test_forward_is_the_papers(images, num_prompts, fraction, fourier):
    model = randomised(vptune.create(tiny_vit(), "vfpt", 4, num_prompts=num_prompts, fourier_fraction=fraction))
    assert model.prompt.fourier_prompts == fourier
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference_logits(model, images, fourier), atol=1e-5, rtol=1e-5)


def test_prompt_dropout_acts_before_the_transform(images):
    model = randomised(vptune.create(tiny_vit(), "vfpt", 4, num_prompts=4)).eval()
    mask = (torch.rand(4, 64, generator=torch.Generator().manual_seed(5)) > 0.3).float() / 0.7

    class FixedDropout(torch.nn.Module):  # the same mask each call, so the reference can apply it too
        def forward(self, x):
            return x * mask

    model.prompt.dropout = FixedDropout()
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference_logits(model, images, 2, lambda p: p * mask),
                                   atol=1e-5, rtol=1e-5)


def test_replaced_prompts_give_keys_and_values_only(images):
    # As vpt-deep: no block computes a prompt row, and the last block computes [CLS] alone.
    model = vptune.create(tiny_vit(), "vfpt", 4, num_prompts=4).eval()
    rows = []
    for block in model.backbone.blocks:
        block.mlp.register_forward_hook(lambda module, inputs, output: rows.append(inputs[0].shape[1]))
    with torch.no_grad():
        model(images)
    assert rows == [1 + model.backbone.patch_embed.num_patches] * (len(model.backbone.blocks) - 1) + [1]


def test_the_file_stores_the_learned_prompts_and_rebuilds_the_model(tmp_path, images):
    model = randomised(vptune.create(tiny_vit(), "vfpt", 4, num_prompts=3, fourier_fraction=1.0)).eval()
    path = vptune.save(model, tmp_path / "task.safetensors")
    stored = load_file(str(path))
    assert set(stored) == {"prompt.embeddings", "head.weight", "head.bias"}
    assert torch.equal(stored["prompt.embeddings"], model.prompt.embeddings)
    restored = vptune.load(path, backbone=tiny_vit()).eval()
    assert restored.config["options"] == {"num_prompts": 3, "fourier_fraction": 1.0, "prompt_dropout": 0.1,
                                         "init": "uniform", "init_samples": 64}
    assert restored.prompt.fourier_prompts == 3
    with torch.no_grad():
        torch.testing.assert_close(restored(images), model(images), atol=0, rtol=0)
    other = tiny_vit()
    with torch.no_grad():
        other.blocks[0].attn.qkv.weight[0, 0] += 1e-3
    with pytest.raises(CheckpointMismatchError, match="was tuned on backbone"):
        vptune.load(path, backbone=other)


VFPT_TASKS = {
    "vfpt-half": ("vfpt", {"num_prompts": 4}),
    "vfpt-all": ("vfpt", {"num_prompts": 2, "fourier_fraction": 1.0}),
    "deep3": ("vpt-deep", {"num_prompts": 3}),
    "linear": ("linear", {}),
}


@pytest.mark.parametrize("variant", sorted(BACKBONES))
def test_mixed_batch_with_vpt_deep_and_linear_equals_each_tasks_own_model(tmp_path, variant):
    files = {name: make_task(tiny_vit(**BACKBONES[variant]), name, tmp_path / f"{name}.safetensors", seed, VFPT_TASKS)
             for seed, name in enumerate(VFPT_TASKS)}
    serving = vptune.MultiTask(tiny_vit(**BACKBONES[variant]))
    for name, path in files.items():
        assert serving.add(name, path).shared
    names = ["vfpt-half", "deep3", "linear", "vfpt-all", "vfpt-half", "linear", "vfpt-all", "deep3", "vfpt-half"]
    images = torch.randn(len(names), 3, 32, 32, generator=torch.Generator().manual_seed(7))
    logits = serving.logits(images, names)
    for name in VFPT_TASKS:
        rows = [i for i, n in enumerate(names) if n == name]
        expected = own_logits(files[name], variant, images[rows])
        torch.testing.assert_close(torch.stack([logits[i] for i in rows]), expected, atol=1e-5, rtol=1e-5)


def swin_batch() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_swin_forward_is_the_papers():
    swin_images = swin_batch()
    # Swin VPT-Deep's forward (tests/test_swin.py's per-window reference) on each block's transformed prompts.
    model = randomised(vptune.create(tiny_swin(), "vfpt", 4, img_size=64, num_prompts=5, fourier_fraction=0.5))
    assert model.prompt.fourier_prompts == 2 and [tuple(e.shape) for e in model.prompt.embeddings] == [
        (2, 5, 32), (2, 5, 64)]
    model.eval()
    transformed = [torch.cat([torch.fft.fft(torch.fft.fft(e[:, :2], dim=-1), dim=-2).real, e[:, 2:]], dim=1)
                   for e in model.prompt.embeddings]
    with torch.no_grad():
        features = reference_features(model.backbone, transformed, swin_images, deep=True)
        expected = F.linear(features, model.head.weight, model.head.bias)
        torch.testing.assert_close(model(swin_images), expected, atol=1e-5, rtol=1e-5)
        vpt_deep = vptune.create(tiny_swin(), "vpt-deep", 4, img_size=64, num_prompts=5).eval()
        vpt_deep.load_state_dict(model.state_dict())
        assert not torch.allclose(vpt_deep(swin_images), expected, atol=1e-3)  # the transform matters


def test_swin_tasks_save_load_and_serve_alone(tmp_path):
    swin_images = swin_batch()
    model = randomised(vptune.create(tiny_swin(), "vfpt", 4, img_size=64, num_prompts=3)).eval()
    path = vptune.save(model, tmp_path / "swin.safetensors")
    assert set(load_file(str(path))) == {"prompt.embeddings.0", "prompt.embeddings.1", "head.weight", "head.bias"}
    serving = vptune.MultiTask(tiny_swin())
    assert not serving.add("swin", path).shared  # Swin has no forward shared by several tasks' samples
    with torch.no_grad():
        torch.testing.assert_close(torch.stack(serving.logits(swin_images, ["swin", "swin"])), model(swin_images),
                                   atol=1e-5, rtol=1e-5)


def test_convnets_are_refused_in_one_line():
    with pytest.raises(MethodError) as error:
        vptune.create(tiny_resnet(), "vfpt", 4)
    message = str(error.value)
    assert "\n" not in message
    assert "method 'vfpt' needs a timm backbone of family ViT, Swin" in message and "is a ConvNet" in message


def test_prototype_init_on_swin_is_refused_in_one_line():
    with pytest.raises(MethodError, match="init 'kmeans' starts ViT prompt tokens.*are a FourierSwinPrompt"):
        vptune.create(tiny_swin(), "vfpt", 4, init="kmeans")


def test_out_of_range_fraction_is_refused():
    with pytest.raises(MethodError, match="fourier_fraction"):
        vptune.create(tiny_vit(), "vfpt", 4, fourier_fraction=1.5)


def test_params_counts_the_prompts_of_every_block(capsys, tmp_path):
    report = storage_report("vit_tiny_patch16_224", "vfpt", img_size=32, num_classes=7, num_prompts=5)
    assert report.tuned_params == 12 * 5 * 192 + 192 * 7 + 7
    model = vptune.create("vit_tiny_patch16_224", "vfpt", 7, pretrained=False, img_size=32, num_prompts=5)
    assert report.bytes_per_task == vptune.save(model, tmp_path / "task.safetensors").stat().st_size
    assert main(["params", "--backbone", "vit_tiny_patch16_224", "--img-size", "32", "--method", "vfpt",
                 "--num-prompts", "5", "--option", "fourier_fraction=0.4", "--num-classes", "7"]) == 0
    assert f"{report.tuned_params:,} parameters" in capsys.readouterr().out
    swin = storage_report("swin_tiny_patch4_window7_224", "vfpt", num_classes=7, num_prompts=5)
    widths = {96: 2, 192: 2, 384: 6, 768: 2}  # stage width: blocks
    assert swin.tuned_params == sum(5 * width * blocks for width, blocks in widths.items()) + 768 * 7 + 7
    code = main(["params", "--backbone", "resnet50", "--method", "vfpt"])
    assert_one_line_error(code, capsys.readouterr().err, "method 'vfpt' needs a timm backbone of family ViT, Swin")


def test_cli_trains_it_and_the_run_records_its_options(small_digits_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", "--data", small_digits_root, "--task", "digits", *TINY_CLI, "--method", "vfpt",
            "--num-prompts", "4", "--option", "fourier_fraction=0.25", "--epochs", "1", "--batch-size", "64",
            "--out", run_dir]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main([str(a) for a in args]) == 0
    summary = json.loads(stdout.getvalue().splitlines()[-1])
    assert summary["tuned_parameters"] == 12 * 4 * 192 + 192 * 10 + 10
    model = load_run_model(run_dir, run_config(run_dir))
    assert model.config["method"] == "vfpt" and model.prompt.fourier_prompts == 1
    assert model.config["options"] == {"num_prompts": 4, "fourier_fraction": 0.25, "prompt_dropout": 0.1,
                                       "init": "uniform", "init_samples": 64}
    assert main(["eval", str(run_dir), "--split", "test", "--quiet"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out.splitlines()[-1])["top1"] <= 1.0


def test_help_and_the_readme_list_its_options_with_defaults():
    defaults = {f.name: f.default for f in dataclasses.fields(VfptOptions)}
    assert defaults == {"num_prompts": 10, "fourier_fraction": 0.5, "prompt_dropout": 0.1, "init": "uniform",
                        "init_samples": 64}
    [line] = [line.split() for line in methods_help().splitlines() if line.split()[:1] == ["vfpt"]]
    assert line[1:] == [f"{name}={value}" for name, value in defaults.items()]
    readme = (Path(__file__).parents[1] / "README.md").read_text().splitlines()
    [row] = [row for row in readme if row.startswith("| `vfpt` |")]
    assert all(f"`{name}` ({value}" in row for name, value in defaults.items())
