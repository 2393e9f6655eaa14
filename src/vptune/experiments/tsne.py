"""t-SNE of the final pre-head features of trained runs, one panel per run, coloured by class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from torch.utils.data import DataLoader, Subset

from ..data import input_spec
from ..engine.config import TrainConfig
from ..engine.evaluate import TASK_FILE, load_run_model, run_config
from ..engine.loaders import build_dataset
from ..engine.runinfo import progress
from ..errors import VptuneError
from ..persistence import read_description

SEED_LIMIT = 2**32


def run_features(
    run_dir: str | Path, *, split: str = "test", max_images: int = 1000, data: str | None = None, seed: int = 0,
    quiet: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Pre-head features (`model.embed`) of up to `max_images` images of a run's `split`, their labels
    and the class names. Images are a seeded random subset when the split holds more."""
    _check_numbers(max_images, seed)
    config = check_run(run_dir)
    model = load_run_model(run_dir, config).eval()
    dataset = build_dataset(data or config.data, config.task, split, input_spec(model.backbone, config.protocol, config.normalize),
                            train=False, seed=config.seed, skip_bad_images=config.skip_bad_images)
    if len(dataset) < 2:
        raise VptuneError(f"split '{split}' of run '{run_dir}' holds {len(dataset)} image(s); a t-SNE needs 2 or more")
    chosen = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:max_images])
    features, labels = [], []
    with torch.no_grad():
        loader = DataLoader(Subset(dataset, chosen.tolist()), batch_size=64)
        for images, targets in progress(loader, f"features {Path(run_dir).name}", enabled=not quiet):
            features.append(model.embed(images).float())
            labels.append(targets)
    return torch.cat(features).numpy(), torch.cat(labels).numpy(), dataset.class_names


def embed_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of `features` (perplexity 30, or less for few points; PCA init; seeded)."""
    perplexity = min(30.0, (len(features) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def tsne_figure(
    run_dirs: list[str | Path], *, split: str = "test", max_images: int = 1000, data: str | None = None,
    seed: int = 0, quiet: bool = False,
) -> Figure:
    """One t-SNE panel per run of its `split` features, points coloured by class, legend of class names."""
    if not run_dirs:
        raise VptuneError("give at least one run folder")
    _check_numbers(max_images, seed)
    seen: dict[Path, str | Path] = {}
    for run_dir in run_dirs:  # every run is checked before the first one is embedded
        check_run(run_dir)
        if Path(run_dir).resolve() in seen:
            raise VptuneError(f"run '{run_dir}' is given twice (also as '{seen[Path(run_dir).resolve()]}'); "
                              "give each run once")
        seen[Path(run_dir).resolve()] = run_dir
    fig = Figure(figsize=(5.2 * len(run_dirs), 4.6), layout="constrained")
    axes = fig.subplots(1, len(run_dirs), squeeze=False)[0]
    for ax, run_dir in zip(axes, run_dirs):
        features, labels, names = run_features(run_dir, split=split, max_images=max_images, data=data, seed=seed,
                                               quiet=quiet)
        points = embed_2d(features, seed)
        for index, (name, colour) in enumerate(zip(names, class_colours(len(names)))):
            mask = labels == index
            if mask.any():
                ax.scatter(points[mask, 0], points[mask, 1], s=8, color=colour, label=name)
        config = run_config(run_dir)
        ax.set_title(f"{config.task}: {config.method} ({len(labels)} {split} images)")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.legend(fontsize="x-small", markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), title="class")
    fig.suptitle("t-SNE of the final pre-head features", fontsize="medium")
    return fig


def class_colours(count: int) -> list[tuple[float, ...]]:
    """Distinct colours: tab10 / tab20 for up to 10 / 20 classes, samples of turbo beyond."""
    if count <= 20:
        cmap = colormaps["tab10" if count <= 10 else "tab20"]
        return [cmap(i) for i in range(count)]
    return [colormaps["turbo"](i / (count - 1)) for i in range(count)]


def check_run(run_dir: str | Path) -> TrainConfig:
    """The configuration of a finished classification run; VptuneError for anything else."""
    config = run_config(run_dir)
    task_file = Path(run_dir) / TASK_FILE
    if not task_file.is_file():
        raise VptuneError(f"run '{run_dir}' has no {TASK_FILE} yet; finish it with "
                          f"`vptune train --resume --out {run_dir}`")
    task_type = read_description(task_file).get("task_type", "classification")
    if task_type != "classification":
        raise VptuneError(f"run '{run_dir}' is a {task_type} run; a t-SNE colours pre-head features by class, "
                          "so it needs a classification run")
    return config


def _check_numbers(max_images: int, seed: int) -> None:
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 2:
        raise VptuneError(f"--max-images must be a whole number >= 2 for a t-SNE, got {max_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise VptuneError(f"--seed must be a whole number in [0, 2**32), got {seed!r}")
