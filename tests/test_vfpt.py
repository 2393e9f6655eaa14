"""vfpt (Visual Fourier Prompt Tuning): the paper's forward, its stored tensors, mixed serving, refusals, the CLI."""

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
from test_swin import tiny_swin


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


@pytest.mark.parametrize("builder,family", [(tiny_swin, "Swin"), (tiny_resnet, "ConvNet")])
def test_other_families_are_refused_in_one_line(builder, family):
    with pytest.raises(MethodError) as error:
        vptune.create(builder(), "vfpt", 4)
    message = str(error.value)
    assert "\n" not in message
    assert "method 'vfpt' needs a timm backbone of family ViT" in message and f"is a {family}" in message


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
    code = main(["params", "--backbone", "swin_tiny_patch4_window7_224", "--method", "vfpt"])
    assert_one_line_error(code, capsys.readouterr().err, "method 'vfpt' needs a timm backbone of family ViT")


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
