"""Evaluation of a model on a split, and of a finished run folder."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..backbones import build_backbone
from ..data import input_spec
from ..errors import VptuneError
from ..model import TunedModel
from ..persistence import load
from ..tasks import Scoring, TaskType, check_eval_options, get_task_type
from .config import TrainConfig, read_yaml
from .distributed import Dist, gather_tensors, init_distributed
from .loaders import build_loader
from .runfolder import CONFIG, TASK_FILE, require_run_folder
from .runinfo import progress, warn_if_slow_bf16


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CPU or GPU when asked, a no-op context otherwise."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate_split(
    kind: TaskType, net: nn.Module, model: TunedModel, loader: DataLoader, ctx: Dist, scoring: Scoring, *,
    precision: str, show: bool, desc: str,
) -> dict[str, Any]:
    """The task type's metrics of every sample the loader covers, gathered from all ranks.

    `net` maps the loader's inputs to logits (the model, or its head on cached features);
    the task type's `predict` reads it (or `model`) batch by batch and its meter scores the split.
    """
    meter = kind.meter(model.num_classes)
    was_training = net.training
    net.eval()
    for inputs, targets in progress(loader, desc, enabled=show):
        with autocast(scoring.device, precision):
            outputs = kind.predict(net, model, inputs, targets, scoring)
        meter.process(outputs, targets)
    net.train(was_training)
    return meter.compute({name: gather_tensors(values, ctx) for name, values in meter.results().items()})


def pick_device(name: str) -> torch.device:
    """'auto' picks the GPU when there is one; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise VptuneError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VptuneError(f"device '{name}' asked for, but this machine has no usable GPU")
    return device


def run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved configuration a run folder recorded; VptuneError for a folder that is not a run's."""
    path = require_run_folder(run_dir) / CONFIG
    if not path.is_file():
        raise VptuneError(f"run folder '{run_dir}' has no {CONFIG} yet; its run has not started")
    try:
        return TrainConfig.from_dict(read_yaml(path))
    except VptuneError as exc:
        raise VptuneError(f"run folder '{run_dir}' has a config.yaml vptune cannot use: {exc}") from exc


def load_run_model(run_dir: str | Path, config: TrainConfig) -> TunedModel:
    """The run's final per-task file on the backbone it was trained on.

    Raises CheckpointMismatchError when the file was made on another backbone than the run's.
    """
    path = Path(run_dir) / TASK_FILE
    if not path.is_file():
        raise VptuneError(f"run '{run_dir}' has no {TASK_FILE} yet; finish it with `vptune train --resume --out {run_dir}`")
    # The backbone comes from the run's config, not from the file, so that a file made on another
    # backbone is refused by its fingerprint. Random-init backbones are rebuilt from the run's seed,
    # as training built them.
    torch.manual_seed(config.seed)
    backbone, _ = build_backbone(config.backbone, pretrained=config.pretrained, img_size=config.img_size,
                                 arch=config.arch, allow_keys=tuple(config.allow_keys))
    return load(path, backbone)


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    *,
    data: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    quiet: bool = False,
    multi_scale: bool = False,
) -> dict[str, Any]:
    """Metrics of a finished run on `split` (of its own data root unless `data` is given).

    The result names the data it scored under `data`: absolute root, task and split, then what
    the run's task type reports of the split (`TaskType.report`, e.g. top-1 or mIoU and each
    class's IoU). `multi_scale` is an evaluation option of the task types that take it (see
    `TaskType.eval_options`): scores averaged over scales 0.5-1.75 and their mirror images.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise VptuneError(f"--batch-size must be a whole number >= 1, got {batch_size!r}")
    config = run_config(run_dir)
    root = _data_root(run_dir, config, data)
    torch_device = pick_device(device)
    warn_if_slow_bf16(torch_device, config.precision)
    ctx = init_distributed(torch_device)
    model = load_run_model(run_dir, config).to(torch_device)
    kind = get_task_type(model.task_type)
    options = {"multi_scale": multi_scale}
    check_eval_options(kind, options)
    spec = input_spec(model.backbone, config.protocol, config.normalize)  # as training built it
    dataset = kind.dataset(str(root), config.task, split, spec, train=False, seed=config.seed,
                           skip_bad_images=config.skip_bad_images)
    if dataset.num_classes > model.num_classes:
        raise VptuneError(
            f"split '{split}' has {dataset.num_classes} classes but the model was trained for {model.num_classes}"
        )
    loader = build_loader(dataset, batch_size or config.batch_size, ctx, shuffle=False, seed=config.seed, epoch=0,
                          num_workers=config.num_workers, collate=kind.collate)
    metrics = evaluate_split(kind, model, model, loader, ctx, Scoring(torch_device, spec.img_size, options),
                             precision=config.precision, show=not quiet and ctx.is_main, desc=f"eval {split}")
    scored = {"root": str(root), "task": config.task, "split": split}
    return {"split": split, "data": scored, **kind.report(metrics, model.class_names, len(dataset.skipped), options)}


def _data_root(run_dir: str | Path, config: TrainConfig, data: str | None) -> Path:
    """The root to score: the one asked for, else the run's own, never one found from the current folder."""
    if data is not None:
        return Path(data).resolve()
    root = Path(config.data)
    if not root.is_absolute():
        raise VptuneError(f"run '{run_dir}' recorded the relative data root '{config.data}', which would be read "
                          "from the current folder; pass --data with the root it was trained on")
    return root
