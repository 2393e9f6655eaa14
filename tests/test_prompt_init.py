"""Prompt init from token prototypes (SPT): the prompts equal a pooling / k-means computed here, from timm's
pieces, on the tokens entering each prompted block; uniform stays VPT's; seeded, bounded, never redone on resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import Dataset, TensorDataset

import vptune
from vptune.cli.main import main
from vptune.engine import trainer
from vptune.engine.loaders import build_dataset
from vptune.engine.prompt_init import init_run_prompts
from vptune.errors import MethodError
from vptune.prompts.prototypes import kmeans, kmeans_init

from conftest import TINY_CLI, VARIANTS, assert_one_line_error, tiny_train_config, tiny_vit

SEED = 7


def block_seed(block: int) -> torch.Generator:
    """The documented draws of block `block` (0-based): a generator seeded `seed * 1009 + block`."""
    return torch.Generator().manual_seed(SEED * 1009 + block)


def reference_tokens(backbone: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Patch tokens entering every block of the backbone without prompts, from timm's pieces."""
    with torch.no_grad():
        x = backbone.norm_pre(backbone._pos_embed(backbone.patch_embed(images)))
        entering = []
        for block in backbone.blocks:
            entering.append(x[:, backbone.num_prefix_tokens:])
            x = block(x)
    return entering


def reference_pooling(tokens: torch.Tensor, count: int, how: str, block: int) -> np.ndarray:
    """Each image's tokens pooled over `count` contiguous near-equal windows, then `count` of the pooled tokens
    (image-major order) picked by the first `count` of the block's seeded permutation."""
    pool = np.mean if how == "mean-pool" else np.max
    windows = np.array_split(tokens.numpy(), count, axis=1)
    pooled = np.stack([pool(w, axis=1) for w in windows], axis=1).reshape(-1, tokens.shape[-1])
    return pooled[torch.randperm(len(pooled), generator=block_seed(block))[:count].numpy()]


def initialised(method: str, how: str, images: torch.Tensor, variant: str = "plain", **options) -> torch.nn.Module:
    model = vptune.create(tiny_vit(**VARIANTS[variant]), method, 4, init=how, **options)
    model.init_prompts([images[:3], images[3:]], seed=SEED)  # two batches, as a loader gives them
    return model


CASES = [("vpt-shallow", {}, [0]), ("vpt-deep", {}, [0, 1, 2]), ("vpt-deep", {"deep_blocks": (2, 3)}, [1, 2]),
         ("vpt-deep+bias", {}, [0, 1, 2]), ("vfpt", {"prompt_dropout": 0.0}, [0, 1, 2]),
         ("e2vpt", {}, [0, 1, 2])]
IDS = ["shallow", "deep", "deep-2-3", "deep+bias", "vfpt", "e2vpt"]


@pytest.mark.parametrize("variant", ["plain", "dinov2-registers", "avg-pool"])
@pytest.mark.parametrize("how", ["mean-pool", "max-pool"])
@pytest.mark.parametrize("method,options,blocks", CASES, ids=IDS)
def test_pooled_prompts_equal_an_independent_pooling_of_the_tokens_entering_each_block(how, method, options, blocks,
                                                                                        variant):
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model = initialised(method, how, images, variant, num_prompts=3, **options)
    tokens = reference_tokens(tiny_vit(**VARIANTS[variant]), images)  # 16 patch tokens an image: windows of 6, 5, 5
    prompts = model.prompt.embeddings.detach()
    assert prompts.shape == (len(blocks), 3, 64)
    for row, block in enumerate(blocks):
        np.testing.assert_allclose(prompts[row].numpy(), reference_pooling(tokens[block], 3, how, block),
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize("method,options,blocks", CASES[:3], ids=["shallow", "deep", "deep-2-3"])
def test_kmeans_prompts_equal_sklearn_kmeans_of_the_tokens_entering_each_block(method, options, blocks):
    cluster = pytest.importorskip("sklearn.cluster")
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model = initialised(method, "kmeans", images, num_prompts=4, **options)
    tokens = reference_tokens(tiny_vit(), images)
    for row, block in enumerate(blocks):
        points = tokens[block].reshape(-1, 64).double()
        start = kmeans_init(points, 4, block_seed(block))
        # The seeding picks 4 different tokens of the sample; from there Lloyd's iterations are sklearn's.
        assert len({tuple(c.tolist()) for c in start}) == 4
        assert all((points == centre).all(dim=1).any() for centre in start)
        reference = cluster.KMeans(4, init=start.numpy(), n_init=1, max_iter=100, tol=1e-4, algorithm="lloyd")
        reference.fit(points.numpy())
        assert reference.n_iter_ < 100  # converged, as the library's iterations
        np.testing.assert_allclose(model.prompt.embeddings[row].detach().numpy(), reference.cluster_centers_,
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("tol", [0.0, 1e-4, 1e-2])
def test_lloyd_iterations_stop_where_sklearns_do(tol):
    cluster = pytest.importorskip("sklearn.cluster")
    generator = torch.Generator().manual_seed(5)
    points = torch.randn(3000, 8, generator=generator, dtype=torch.float64)
    points[:1000] += 1.5  # overlapping clusters: many rounds until no assignment changes
    start = points[torch.randperm(3000, generator=generator)[:6]]
    reference = cluster.KMeans(6, init=start.numpy(), n_init=1, max_iter=100, tol=tol, algorithm="lloyd")
    reference.fit(points.numpy())
    assert 2 < reference.n_iter_ < 100
    np.testing.assert_allclose(kmeans(points, start, tol=tol).numpy(), reference.cluster_centers_, rtol=0, atol=1e-8)


def test_kmeans_seeding_never_repeats_a_token_and_refuses_too_few_distinct_ones():
    points = torch.tensor([[0.0, 0.0]] * 50 + [[1.0, 0.0]] * 50 + [[0.0, 3.0]])
    for seed in range(20):
        start = kmeans_init(points, 3, torch.Generator().manual_seed(seed))
        assert sorted(map(tuple, start.tolist())) == [(0.0, 0.0), (0.0, 3.0), (1.0, 0.0)]
    with pytest.raises(MethodError, match="needs 4 distinct tokens.*raise init_samples"):
        kmeans_init(points, 4, torch.Generator().manual_seed(0))


def test_uniform_is_vpts_init_unchanged(images):
    torch.manual_seed(3)
    default = vptune.create(tiny_vit(), "vpt-deep", 4)
    torch.manual_seed(3)
    uniform = vptune.create(tiny_vit(), "vpt-deep", 4, init="uniform", init_samples=5)
    assert uniform.prompt_init is None
    before = uniform.prompt.embeddings.detach().clone()
    uniform.init_prompts([images], seed=SEED)
    assert uniform.prompt.embeddings.equal(default.prompt.embeddings) and uniform.prompt.embeddings.equal(before)
    bound = (6 / (3 * 8 * 8 + 64)) ** 0.5
    assert 0.9 * bound < before.abs().max() <= bound


class CountingImages(Dataset):
    """Images with labels that remember which indices were read."""

    def __init__(self, count: int) -> None:
        self.images = torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(2))
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        self.read.append(index)
        return self.images[index], 0


@pytest.mark.parametrize("samples", [6, 40])
def test_the_sample_is_bounded_seeded_and_the_prompts_come_from_it_alone(samples):
    dataset = CountingImages(30)
    model = vptune.create(tiny_vit(), "vpt-deep", 4, num_prompts=2, init="mean-pool", init_samples=samples)
    record = init_run_prompts(model, dataset, seed=SEED, batch_size=4, device=torch.device("cpu"))
    drawn = sorted(torch.randperm(30, generator=torch.Generator().manual_seed(SEED))[:samples].tolist())
    assert dataset.read == drawn and len(drawn) == min(samples, 30)
    assert {k: v for k, v in record.items() if k != "seconds"} == {
        "init": "mean-pool", "images": len(drawn), "blocks": [1, 2, 3], "seed": SEED}
    tokens = reference_tokens(tiny_vit(), dataset.images[drawn])
    for block in range(3):
        np.testing.assert_allclose(model.prompt.embeddings[block].detach().numpy(),
                                   reference_pooling(tokens[block], 2, "mean-pool", block), rtol=0, atol=1e-6)


def test_same_seed_same_prompts_other_seed_other_prompts():
    dataset = TensorDataset(torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(4)), torch.zeros(12))

    def prompts(how: str, seed: int) -> torch.Tensor:
        model = vptune.create(tiny_vit(), "vpt-deep", 4, num_prompts=3, init=how, init_samples=8)
        init_run_prompts(model, dataset, seed=seed, batch_size=5, device=torch.device("cpu"))
        return model.prompt.embeddings.detach()

    for how in ("max-pool", "kmeans"):
        assert prompts(how, 1).equal(prompts(how, 1))
        assert not prompts(how, 1).equal(prompts(how, 2))


def without_seconds(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "seconds"}


def test_a_run_starts_from_the_prototypes_records_them_and_a_resume_does_not_redo_them(
        small_digits_root, tmp_path, monkeypatch):
    cluster = pytest.importorskip("sklearn.cluster")

    def config(out):
        return tiny_train_config(small_digits_root, out, method="vpt-deep", epochs=2, seed=SEED, eval_split="",
                                 method_options={"num_prompts": 2, "init": "kmeans", "init_samples": 12})

    started_from, runs = [], []
    train_epoch = trainer._Run._train_epoch

    def recording(run, epoch):
        started_from.append(run.model.prompt.embeddings.detach().clone())
        runs.append(run)
        return train_epoch(run, epoch)

    with monkeypatch.context() as patch:
        patch.setattr(trainer._Run, "_train_epoch", recording)
        whole = trainer.train(config(tmp_path / "whole"))

    # Epoch 1 starts from the k-means centres of the tokens of 12 training images drawn with the run's seed,
    # prepared as for evaluation.
    run = runs[0]  # its backbone is the frozen one the run built from its seed
    dataset = build_dataset(str(small_digits_root), "digits", "train800", run.spec, train=False, seed=SEED,
                            skip_bad_images=False)
    drawn = sorted(torch.randperm(len(dataset), generator=torch.Generator().manual_seed(SEED))[:12].tolist())
    tokens = reference_tokens(run.model.backbone, torch.stack([dataset[i][0] for i in drawn]))
    assert len(started_from) == 2 and started_from[0].shape == (12, 2, 192)
    for block in range(12):
        points = tokens[block].reshape(-1, 192).double()  # 12 images x 4 patches
        start = kmeans_init(points, 2, block_seed(block)).numpy()
        reference = cluster.KMeans(2, init=start, n_init=1, max_iter=100, tol=1e-4, algorithm="lloyd")
        reference.fit(points.numpy())
        np.testing.assert_allclose(started_from[0][block].numpy(), reference.cluster_centers_, rtol=0, atol=1e-5)
    assert without_seconds(whole["prompt_init"]) == {"init": "kmeans", "images": 12, "blocks": list(range(1, 13)),
                                                     "seed": SEED}
    assert json.loads((tmp_path / "whole" / "summary.json").read_text())["prompt_init"] == whole["prompt_init"]
    assert yaml.safe_load((tmp_path / "whole" / "config.yaml").read_text())["method_options"]["init"] == "kmeans"

    save = trainer.save_checkpoint

    def stop_after_first_epoch(run_dir, state):
        save(run_dir, state)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "save_checkpoint", stop_after_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            trainer.train(config(tmp_path / "killed"))
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "init_run_prompts", lambda *a, **k: pytest.fail("a resumed run drew its prompts again"))
        resumed = trainer.train(config(tmp_path / "killed"), resume=True)
    assert without_seconds(resumed["prompt_init"]) == without_seconds(whole["prompt_init"])
    final = [load_file(tmp_path / run / "task.safetensors") for run in ("whole", "killed")]
    assert final[0].keys() == final[1].keys()
    assert all(final[0][name].equal(final[1][name]) for name in final[0])


def test_prototypes_need_vit_prompt_tokens():
    from test_conv import tiny_resnet
    from test_swin import tiny_swin

    with pytest.raises(MethodError, match="init 'kmeans' starts ViT.*are a BorderPrompt, not ViT tokens: use init=uniform"):
        vptune.create(tiny_resnet(), "vpt-shallow", 3, init="kmeans")
    with pytest.raises(MethodError, match="init 'mean-pool' starts ViT prompt tokens.*are a SwinPrompt"):
        vptune.create(tiny_swin(), "vpt-deep", 3, init="mean-pool")
    for options in ({"location": "add"}, {"prompt_dim": 8}):
        with pytest.raises(MethodError, match="location=prepend and no prompt_dim"):
            vptune.create(tiny_vit(), "vpt-deep", 3, init="max-pool", **options)
    with pytest.raises(MethodError, match="num_prompts 20 > 16"):
        initialised("vpt-shallow", "mean-pool", torch.randn(4, 3, 32, 32), num_prompts=20)


@pytest.mark.parametrize("flags,fragments", [
    (["--init", "k-means"], ["init 'k-means' is not one of: uniform, mean-pool, max-pool, kmeans"]),
    (["--init", "kmeans", "--init-samples", "0"], ["needs init_samples >= 1, got 0"]),
    (["--init", "kmeans", "--location", "add"], ["location=prepend and no prompt_dim"]),
    (["--init", "max-pool", "--num-prompts", "10"], ["4 patch tokens into num_prompts windows; num_prompts 10 > 4"]),
])
def test_bad_init_settings_are_one_line(small_digits_root, tmp_path, capsys, flags, fragments):
    code = main([str(a) for a in ["train", "--data", small_digits_root, "--task", "digits", *TINY_CLI,
                                  "--method", "vpt-deep", "--epochs", "1", "--quiet", "--out", tmp_path / "r", *flags]])
    assert_one_line_error(code, capsys.readouterr().err, *fragments)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
