"""E2VPT: key-value prompts in every attention plus deep visual prompts, against a forward from timm's pieces."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import vptune
from vptune.cli.main import main
from vptune.engine import trainer
from vptune.engine.evaluate import load_run_model, run_config
from vptune.errors import MethodError
from vptune.methods.e2vpt_prune import importance, lowest, prune_and_rewind

from conftest import TINY_CLI, tiny_train_config, tiny_vit
from test_conv import tiny_resnet
from test_swin import reference_features as swin_reference_features
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
                                       "prune_fraction": 0.5, "segments": 16,
                                       "init": "uniform", "init_samples": 64}


def test_convnets_are_refused_in_one_line():
    with pytest.raises(MethodError, match=r"^method 'e2vpt' needs a timm backbone of family ViT, Swin; .*ConvNet.*$"):
        vptune.create(tiny_resnet(), "e2vpt", 5)


def test_segments_must_divide_the_width():
    with pytest.raises(MethodError, match="segments 5 must divide the embedding width 64"):
        vptune.create(tiny_vit(), "e2vpt", 5, prune="segment", segments=5)
    with pytest.raises(MethodError, match="segments 3 must divide the embedding width 32"):
        vptune.create(tiny_swin(), "e2vpt", 5, prune="segment", segments=3)


# ------------------------------------------------------------ Swin

def swin_batch() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def swin_key_values(prompt) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Each block's (keys, values) `(heads, Q, head_dim)`, per stage."""
    return [[(block[0], block[1]) for block in stage] for stage in prompt.key_value]


def test_swin_key_value_prompts_enter_every_window_attention():
    model = trained_like(vptune.create(tiny_swin(), "e2vpt", 5, img_size=64, num_prompts=3, kv_prompts=2))
    prompt = model.prompt
    # Two stages of two blocks: widths 32, 64 with 2, 4 heads of 16.
    assert [tuple(e.shape) for e in prompt.embeddings] == [(2, 3, 32), (2, 3, 64)]
    assert [tuple(kv.shape) for kv in prompt.key_value] == [(2, 2, 2, 2, 16), (2, 2, 4, 2, 16)]
    images = swin_batch()
    with torch.no_grad():
        features = swin_reference_features(model.backbone, list(prompt.embeddings), images, True,
                                           swin_key_values(prompt))
        torch.testing.assert_close(model(images), model.head(features), atol=1e-5, rtol=1e-5)
        without = swin_reference_features(model.backbone, list(prompt.embeddings), images, True)
        assert not torch.allclose(model(images), model.head(without), atol=1e-3)  # the key-value prompts act


def test_swin_pruning_masks_every_stage_and_rewinds():
    model = vptune.create(tiny_swin(), "e2vpt", 4, img_size=64, num_prompts=4, kv_prompts=2, prune="segment",
                          segments=4)
    initial = {k: v.clone() for k, v in model.tuned_state_dict().items()}
    trained_like(model)
    images, labels = swin_batch(), torch.tensor([0, 3])
    losses = lambda: iter([F.cross_entropy(model(images), labels)])  # noqa: E731
    record = prune_and_rewind(model, initial, losses)
    keep = model.prompt.keep
    assert len(record["pruned_tokens"]) == 2 and keep[record["pruned_tokens"]].sum() == 0
    assert record["kept_values_per_block"] == [int(keep.sum()) * 32 // 4, int(keep.sum()) * 64 // 4]
    for name, value in model.tuned_state_dict().items():
        if name != "prompt.keep":
            assert torch.equal(value, initial[name]), name
    model.eval()
    visual = [masked_visual(e, keep) for e in model.prompt.embeddings]
    with torch.no_grad():
        features = swin_reference_features(model.backbone, visual, images, True, swin_key_values(model.prompt))
        torch.testing.assert_close(model(images), model.head(features), atol=1e-5, rtol=1e-5)


def test_a_swin_task_file_rebuilds_it_and_serves_alone(tmp_path):
    model = trained_like(vptune.create(tiny_swin(), "e2vpt", 4, img_size=64, num_prompts=2, kv_prompts=3))
    path = vptune.save(model, tmp_path / "swin.safetensors")
    assert set(load_file(str(path))) == {"prompt.embeddings.0", "prompt.embeddings.1", "prompt.key_value.0",
                                         "prompt.key_value.1", "head.weight", "head.bias"}
    serving = vptune.MultiTask(tiny_swin())
    assert not serving.add("swin", path).shared  # Swin has no forward shared by several tasks' samples
    images = swin_batch()
    with torch.no_grad():
        torch.testing.assert_close(torch.stack(serving.logits(images, ["swin", "swin"])), model(images),
                                   atol=1e-5, rtol=1e-5)
    with pytest.raises(MethodError, match="init 'kmeans' starts ViT prompt tokens.*are a E2vptSwinPrompt"):
        vptune.create(tiny_swin(), "e2vpt", 4, init="kmeans")


def test_params_counts_swin_prompts_of_every_block():
    from vptune.accounting import storage_report

    report = storage_report("swin_tiny_patch4_window7_224", "e2vpt", num_classes=7, num_prompts=5)
    stages = {96: (2, 3), 192: (2, 6), 384: (6, 12), 768: (2, 24)}  # width: blocks, heads
    # Per block: 5 visual prompts of the stage's width, 5 keys and 5 values per head of width / heads.
    assert report.tuned_params == sum(blocks * (5 * width + 2 * 5 * width) for width, (blocks, _) in stages.items()) \
        + 768 * 7 + 7


def test_cli_trains_an_e2vpt_task_file(small_digits_root, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", small_digits_root, "--task", "digits", *TINY_CLI, "--method", "e2vpt",
            "--num-prompts", "2", "--option", "kv_prompts=3", "--epochs", "1", "--batch-size", "64", "--quiet",
            "--out", out]
    assert main([str(a) for a in args]) == 0
    model = load_run_model(out, run_config(out))
    assert model.config["method"] == "e2vpt" and model.config["options"]["kv_prompts"] == 3
    assert model.prompt.key_value.shape[3] == 3 and model.prompt.embeddings.shape[1] == 2
    assert json.loads((out / "summary.json").read_text())["tuned_parameters"] == (
        12 * 2 * 192 + 12 * 2 * 3 * 192 + 192 * 10 + 10)


# ------------------------------------------------------------ pruning and rewinding

def masked_visual(embeddings: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Visual prompts with a (M, R) 0/1 mask over tokens and their R equal segments, in every block."""
    depth, tokens, width = embeddings.shape
    return (embeddings.view(depth, tokens, keep.shape[1], -1) * keep[None, :, :, None]).view(depth, tokens, width)


def test_importance_is_the_mean_absolute_gradient_of_the_loss_by_each_token_mask():
    model = trained_like(vptune.create(tiny_vit(), "e2vpt", 4, num_prompts=4, kv_prompts=2, prune="segment",
                                       segments=4))
    batches = [(torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(s)), torch.tensor([0, 3, 1]))
               for s in range(2)]
    tokens, segments = importance(model.prompt, lambda: (F.cross_entropy(model(x), y) for x, y in batches))

    expected_tokens, expected_segments = torch.zeros(4), torch.zeros(4, 4)
    for images, labels in batches:
        rho = torch.ones(4, 1, requires_grad=True)
        rho_segments = torch.ones(4, 4, requires_grad=True)
        visual = masked_visual(model.prompt.embeddings, rho * rho_segments)
        logits = model.head(reference_features(model.backbone, images, visual, model.prompt.key_value))
        token_grad, segment_grad = torch.autograd.grad(F.cross_entropy(logits, labels), [rho, rho_segments])
        expected_tokens += token_grad.abs().squeeze(1) / 2
        expected_segments += segment_grad.abs() / 2
    torch.testing.assert_close(tokens, expected_tokens, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(segments, expected_segments, atol=1e-6, rtol=1e-4)
    assert model.prompt.token_gate is None and model.prompt.segment_gate is None


def test_lowest_prunes_a_fraction_and_keeps_one():
    scores = torch.tensor([0.5, 0.1, 0.9, 0.3])
    assert lowest(scores, 0.5).tolist() == [1, 3]
    assert lowest(scores, 0.99).tolist() == [0, 1, 3]  # never all
    assert lowest(scores, 0.2).tolist() == []


@pytest.mark.parametrize("prune", ["token", "segment"])
def test_pruning_masks_the_lowest_scores_and_rewinds_every_tuned_tensor(prune):
    model = vptune.create(tiny_vit(), "e2vpt", 4, num_prompts=4, kv_prompts=2, prune=prune, segments=4)
    initial = {k: v.clone() for k, v in model.tuned_state_dict().items()}
    trained_like(model)
    images, labels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5)), torch.tensor([0, 1, 2, 3])
    losses = lambda: iter([F.cross_entropy(model(images), labels)])  # noqa: E731
    token_scores, _ = importance(model.prompt, losses)
    record = prune_and_rewind(model, initial, losses)

    keep = model.prompt.keep
    pruned = sorted(torch.argsort(token_scores)[:2].tolist())
    assert record["pruned_tokens"] == pruned and keep[pruned].sum() == 0
    kept = [t for t in range(4) if t not in pruned]
    if prune == "token":
        assert keep[kept].eq(1).all()
    else:  # half of each kept token's segments, the lowest scored with the token mask in place
        for token in kept:
            scores = torch.tensor(record["segment_importance"][token])
            assert keep[token].tolist() == [0.0 if s in torch.argsort(scores)[:2].tolist() else 1.0 for s in range(4)]
    for name, value in model.tuned_state_dict().items():
        if name != "prompt.keep":
            assert torch.equal(value, initial[name]), name
    model.eval()
    with torch.no_grad():
        visual = masked_visual(model.prompt.embeddings, keep)
        expected = model.head(reference_features(model.backbone, images, visual, model.prompt.key_value))
        torch.testing.assert_close(model(images), expected, atol=1e-5, rtol=1e-5)


def test_a_pruned_task_file_keeps_its_mask_and_serves_mixed(tmp_path):
    model = trained_like(vptune.create(tiny_vit(), "e2vpt", 4, num_prompts=4, kv_prompts=2, prune="segment",
                                       segments=4))
    with torch.no_grad():
        model.prompt.keep.copy_(torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1.0]]))
    path = vptune.save(model, tmp_path / "pruned.safetensors")
    deep = vptune.save(vptune.create(tiny_vit(), "vpt-deep", 3, num_prompts=2), tmp_path / "deep.safetensors")
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    restored = vptune.load(path, backbone=tiny_vit()).eval()
    assert torch.equal(restored.prompt.keep, model.prompt.keep)
    serving = vptune.MultiTask(tiny_vit())
    serving.add("pruned", path)
    serving.add("deep", deep)
    with torch.no_grad():
        torch.testing.assert_close(restored(images), model(images), atol=0, rtol=0)
        logits = serving.logits(images, ["pruned", "deep", "pruned", "deep"])
        torch.testing.assert_close(torch.stack([logits[0], logits[2]]), model(images[[0, 2]]), atol=1e-5, rtol=1e-5)


def pruning_run(root, out, init="uniform", **overrides):
    return tiny_train_config(root, out, method="e2vpt", epochs=2, batch_size=64, seed=4,
                             method_options={"num_prompts": 4, "kv_prompts": 2, "prune": "segment", "segments": 4,
                                             "prompt_dropout": 0.2, "init": init}, **overrides)


# With a prototype init the rewind goes back to the prototypes drawn at the start, which a resumed run cannot redraw.
@pytest.mark.parametrize("init", ["uniform", "mean-pool"])
def test_the_rewound_stage_resumes_after_an_interruption(small_digits_root, tmp_path, monkeypatch, init):
    whole = trainer.train(pruning_run(small_digits_root, tmp_path / "whole", init))
    save = trainer.save_checkpoint
    # Interrupted at the stage boundary (before scoring), then inside the rewound stage.
    for stop_after_epoch, resume in ((2, False), (3, True)):
        def interrupting(run_dir, state, stop=stop_after_epoch):
            save(run_dir, state)
            if state["next_epoch"] == stop:
                raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr(trainer, "save_checkpoint", interrupting)
            with pytest.raises(KeyboardInterrupt):
                trainer.train(pruning_run(small_digits_root, tmp_path / "killed", init), resume=resume)
    resumed = trainer.train(pruning_run(small_digits_root, tmp_path / "killed", init), resume=True)

    assert resumed["stages"] == whole["stages"] and len(whole["stages"]) == 1
    assert whole["stages"][0]["stage"] == 2 and len(whole["stages"][0]["pruned_tokens"]) == 2
    assert resumed["selected_epoch"] == whole["selected_epoch"] > 2  # chosen among the pruned model's epochs
    rows = [list(csv.DictReader((tmp_path / run / "metrics.csv").open())) for run in ("whole", "killed")]
    assert [r["stage"] for r in rows[0]] == ["1", "1", "2", "2"]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows[1]] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in rows[0]]
    files = [load_file(tmp_path / run / "task.safetensors") for run in ("whole", "killed")]
    assert files[0].keys() == files[1].keys() and "prompt.keep" in files[0]
    for name, value in files[0].items():
        assert value.equal(files[1][name]), name
    assert files[0]["prompt.keep"][whole["stages"][0]["pruned_tokens"]].sum() == 0
