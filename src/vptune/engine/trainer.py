"""The training loop: seeded, resumable, validated each epoch, distributed under torchrun."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch._dynamo.exc import TorchDynamoException
from torch.nn.parallel import DistributedDataParallel

from ..api import create
from ..data import input_spec
from ..errors import TrainingError, VptuneError
from ..methods import get_method
from ..model import TunedModel
from ..persistence import non_finite_tensors, save
from ..tasks import Scoring, TaskType, task_type_of
from .config import TrainConfig, read_yaml, write_yaml
from .distributed import Dist, broadcast_flag, init_distributed, sum_over_ranks, sync_batch_norm
from .evaluate import autocast, evaluate_split, pick_device
from .features import cached_features, trains_head_only
from .loaders import build_loader
from .optim import apply_schedule, build_optimizer
from .prefix_cache import TunedTail, first_tuned_block, prefix_tokens
from .prompt_init import init_run_prompts
from .resolve import resolve_config
from .runfolder import TASK_FILE, check_out_folder, locked, mark_run_folder
from .runinfo import MetricsLog, environment, progress, warn_if_slow_bf16, write_json
from .train_state import CHECKPOINT, load_checkpoint, save_checkpoint

logger = logging.getLogger("vptune")

# Settings that may change when a run is resumed: they do not affect its result.
RUNTIME_KEYS = ("quiet", "device", "num_workers")
# Settings a run resolves when it starts; left unset (None) on resume they keep the run's values.
RESOLVED_KEYS = ("train_split", "eval_split", "protocol", "img_size", "head", "optimizer", "lr", "weight_decay",
                 "warmup_epochs", "schedule", "min_lr", "head_lr_multiplier")


def train(config: TrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Train one task as configured; return the summary written to `summary.json`.

    With `resume`, the run in `config.out` goes on with its own settings: `config` may change
    only the runtime settings (quiet, device, num_workers); any other difference raises
    VptuneError naming it. Raises VptuneError (TrainingError) for unusable settings, a folder
    that is not a run's, a run folder another run is writing, and a diverging run.
    """
    if not isinstance(config, TrainConfig):
        raise VptuneError(f"train takes a TrainConfig, got {type(config).__name__}")
    run_dir = Path(config.out)
    check_out_folder(run_dir)
    if resume:
        config = _resumed_config(config, run_dir)
    config.validate()
    device = pick_device(config.device)
    warn_if_slow_bf16(device, config.precision)
    ctx = init_distributed(device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    with locked(run_dir) if ctx.is_main else nullcontext():
        if not resume:
            _check_fresh(run_dir)
        config = resolve_config(config)
        kind, _ = task_type_of(config.data, config.task)
        model, config = build_model(config, kind)
        return _Run(config, kind, model.to(device), run_dir, device, ctx, resume).fit()


def build_model(config: TrainConfig, kind: TaskType) -> tuple[TunedModel, TrainConfig]:
    """The model a resolved `config` trains, with the input pipeline it records, and `config` with what
    building it decided (image size, head and method options left to their automatic values)."""
    torch.manual_seed(config.seed)  # random-init backbones are rebuilt from this seed
    classes = kind.load_split(config.data, config.task, config.train_split, seed=config.seed)
    model = create(
        config.backbone, config.method, classes.num_classes, pretrained=config.pretrained,
        img_size=config.img_size, arch=config.arch, allow_keys=tuple(config.allow_keys),
        class_names=classes.class_names, head=config.head, head_options=config.head_options,
        task_type=kind.name, **config.method_options,
    )
    if config.grad_checkpointing:
        model.set_grad_checkpointing(True)
    spec = input_spec(model.backbone, config.protocol, config.normalize)
    model.set_input_spec(spec)  # so the per-task file predicts as evaluation prepared
    built = dataclasses.replace(
        config, img_size=spec.img_size, method_options=model.config["options"],
        head_options={k: v for k, v in model.config["head"].items() if k != "kind"},
    )
    return model, built


class _Run:
    def __init__(self, config: TrainConfig, kind: TaskType, model: TunedModel, run_dir: Path, device: torch.device,
                 ctx: Dist, resume: bool) -> None:
        self.config, self.kind, self.model = config, kind, model
        self.run_dir, self.device, self.ctx = run_dir, device, ctx
        self.show = not config.quiet and ctx.is_main
        self.spec = model.input_spec
        self._load_data()
        self.prompt_init = None
        if model.prompt_init is not None and not resume:
            self._init_prompts()
        self.model.head = sync_batch_norm(self.model.head, ctx, device)
        self.optimizer = build_optimizer(self.model, config)
        # Counted as the loop runs them: under torchrun each rank takes batch_size // world_size per step.
        self.steps_per_epoch = len(self._loader(self.train_set, 0, shuffle=True))
        # Each stage (a method may add some, e.g. prune then retrain) trains `epochs` epochs on its own schedule.
        self.method = get_method(config.method)[0]
        self.stages = self.method.stages(model)
        self.total_epochs = config.epochs * self.stages
        # Tensors before training (after any prototype init; the checkpoint keeps them), for a later stage.
        self.initial = {k: v.detach().clone() for k, v in model.tuned_state_dict().items()} if self.stages > 1 else {}
        self.stage_records: list[dict[str, Any]] = []
        self.total_steps = self.steps_per_epoch * config.epochs
        warmup_epochs = min(config.warmup_epochs, config.epochs)  # a longer warm-up ends with the run
        self.warmup_steps = min(self.total_steps - 1, round(warmup_epochs * self.steps_per_epoch))
        self.net = self._trained_module()
        self.start_epoch, self.best, self.best_state = 0, None, None
        if resume:
            self._restore(load_checkpoint(run_dir))
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            mark_run_folder(run_dir)
            write_yaml(config.to_dict(), run_dir / "config.yaml")
            write_json(environment(device, ctx.world_size), run_dir / "environment.json")
            self.log = MetricsLog(run_dir)

    def _load_data(self) -> None:
        config = self.config
        self.train_set = self._dataset(config.train_split, train=True)
        self.eval_set = self._dataset(config.eval_split, train=False) if config.eval_split else None
        if self.eval_set is not None and self.eval_set.num_classes > self.train_set.num_classes:
            raise VptuneError(f"split '{config.eval_split}' has classes that '{config.train_split}' lacks")
        splits = [ds for ds in (self.train_set, self.eval_set) if ds is not None]
        self.skipped_images = {ds.split.split: len(ds.skipped) for ds in splits}

    def _init_prompts(self) -> None:
        """Prototype prompts, drawn once before the first epoch (a resumed run reads its prompts back) from the
        images it trains on, prepared as for evaluation."""
        config = self.config
        images = self.kind.dataset(config.data, config.task, config.train_split, self.spec, train=False,
                                   seed=config.seed, skip_bad_images=config.skip_bad_images,
                                   fraction=config.train_fraction)
        self.prompt_init = init_run_prompts(self.model, images, seed=config.seed, batch_size=config.batch_size,
                                            device=self.device, collate=self.kind.collate)

    def _dataset(self, split: str, *, train: bool):
        config = self.config
        return self.kind.dataset(config.data, config.task, split, self.spec, train=train, seed=config.seed,
                                 skip_bad_images=config.skip_bad_images,
                                 fraction=config.train_fraction if train else 1.0)

    def _trained_module(self) -> torch.nn.Module:
        """What the loop runs on a batch: the model, or with cached inputs the part of it after them;
        wrapped for torchrun and torch.compile when asked."""
        config, device = self.config, self.device
        # Resize-only transforms give the same features every epoch: compute them once.
        self.features_cached = config.cache_features and trains_head_only(self.model) and config.protocol == "vtab"
        trained = self.model
        if self.features_cached:
            self.train_set = self._features(self.train_set, config.train_split, config.train_fraction)
            self.eval_set = self._features(self.eval_set, config.eval_split, 1.0) if self.eval_set is not None else None
            trained = self.model.head
        elif config.cache_features and config.protocol == "vtab" and (first := first_tuned_block(self.model)):
            trained = self._reuse_frozen_prefix(first) or trained
        net = DistributedDataParallel(trained, device_ids=[device.index] if device.type == "cuda" else None) \
            if self.ctx.enabled else trained
        return torch.compile(net) if config.compile else net

    def _features(self, dataset, split: str, fraction: float):
        config = self.config
        subset = (fraction, config.seed) if fraction < 1.0 else None  # seeded subsets differ by seed
        key = (str(Path(config.data).resolve()), config.task, split, subset, self.spec, config.skip_bad_images)
        return cached_features(self.model, dataset, key, self.device, self.ctx, batch_size=config.batch_size,
                               show=self.show, desc=f"features {split}")

    def _reuse_frozen_prefix(self, first: int) -> TunedTail | None:
        """Swap the datasets for the tokens entering block `first` and return the model tail."""
        config = self.config
        datasets = [self.train_set] + ([self.eval_set] if self.eval_set is not None else [])
        cached = [prefix_tokens(self.model, first, d, self.device, self.ctx, batch_size=config.batch_size,
                                show=self.show, desc=f"tokens before block {first + 1}") for d in datasets]
        if any(c is None for c in cached):
            return None
        self.train_set = cached[0]
        self.eval_set = cached[1] if self.eval_set is not None else None
        self.features_cached = True
        return TunedTail(self.model, first)

    def fit(self) -> dict[str, Any]:
        with _compile_errors(self.config.compile):
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        started = time.time()
        for epoch in range(self.start_epoch, self.total_epochs):
            if epoch and epoch % self.config.epochs == 0:
                self._start_stage(epoch // self.config.epochs + 1)
            row = self._train_epoch(epoch)
            self._check_finite(epoch, row["lr"])
            if self.eval_set is not None:
                metrics = self._validate(epoch)
                row.update({f"val_{k}": v for k, v in metrics.items() if k != "n"})
                self._select(epoch, metrics[self.kind.selection_metric])
            row["seconds"] = round(time.time() - started, 2)
            if self.ctx.is_main:
                self.log.append(row)
                save_checkpoint(self.run_dir, self._state(epoch + 1))
                if self.show:
                    print(_epoch_line(row, self.kind), flush=True)
        return self._finish(time.time() - started)

    def _start_stage(self, stage: int) -> None:
        """Hand the model, with the best epoch of the stage that ended, to its method for stage `stage`."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state, strict=False)
        torch.manual_seed(self.config.seed * 100_003 + stage)  # augmentation of the scoring pass repeats on resume
        record = self.method.start_stage(self.model, stage, self.initial, self._training_losses)
        self.stage_records.append(record)
        self.optimizer = build_optimizer(self.model, self.config)
        self.best, self.best_state = None, None
        if self.show:
            scalars = ", ".join(f"{k} {v}" for k, v in record.items() if k != "stage" and isinstance(v, (str, int)))
            print(f"stage {stage}: {scalars}", flush=True)

    def _training_losses(self) -> Iterator[torch.Tensor]:
        """The loss of each batch of one pass over the training split, the model in eval mode (no dropout).

        Every process reads the whole split, so that all compute the same result."""
        self.model.eval()
        loader = build_loader(self.train_set, self.config.batch_size, Dist(), shuffle=False, seed=self.config.seed,
                              epoch=0, num_workers=self.config.num_workers, collate=self.kind.collate)
        for images, labels in loader:
            images, labels = images.to(self.device), labels.to(self.device)
            with autocast(self.device, self.config.precision):
                outputs = self.kind.forward(self.model, images)
            yield self.kind.loss(self.model, outputs, labels)

    def _validate(self, epoch: int) -> dict[str, float]:
        """The task type's validation metrics (and `n`) of the epoch's tuned tensors."""
        loader = self._loader(self.eval_set, epoch, shuffle=False)
        scoring = Scoring(self.device, self.spec.img_size)
        metrics = evaluate_split(self.kind, self.net, self.model, loader, self.ctx, scoring,
                                 precision=self.config.precision, show=self.show, desc=f"eval {self.config.eval_split}")
        return {key: metrics[key] for key in ("n", *self.kind.metrics) if key in metrics}

    def _loader(self, dataset, epoch: int, *, shuffle: bool):
        config = self.config
        return build_loader(dataset, config.batch_size, self.ctx, shuffle=shuffle, seed=config.seed, epoch=epoch,
                            num_workers=config.num_workers, collate=self.kind.collate)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        config = self.config
        # Prompt dropout and augmentation draw from this seed, so a resumed epoch repeats exactly.
        torch.manual_seed(config.seed * 100_003 + epoch + 1)
        self.net.train()
        loss_sum, correct, seen, samples = 0.0, 0, 0, 0
        loader = self._loader(self.train_set, epoch, shuffle=True)
        bar = progress(loader, f"epoch {epoch + 1}/{self.total_epochs}", enabled=self.show)
        for step_in_epoch, (images, labels) in enumerate(bar):
            step = (epoch % config.epochs) * self.steps_per_epoch + step_in_epoch
            lr = apply_schedule(self.optimizer, config, step, self.total_steps, self.warmup_steps)
            images, labels = images.to(self.device), labels.to(self.device)
            with autocast(self.device, config.precision):
                outputs = self.kind.forward(self.net, images)
            loss = self.kind.loss(self.model, outputs, labels)
            hits, counted = self.kind.hits(outputs, labels)
            # Every rank stops at the same step, so none waits forever in the next gradient all-reduce.
            if broadcast_flag(not torch.isfinite(loss), self.ctx):
                value = loss.item() if not torch.isfinite(loss) else "non-finite on another rank"
                raise TrainingError(
                    f"loss became {value} at epoch {epoch + 1}, step {step_in_epoch + 1} (lr {lr:.3g}); "
                    "lower --lr or set --grad-clip"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.trainable_parameters().values(), config.grad_clip)
            self.optimizer.step()
            loss_sum += loss.item() * len(labels)
            correct += hits
            seen += counted
            samples += len(labels)
        loss_sum, correct, seen, samples = sum_over_ranks([loss_sum, correct, seen, samples], self.ctx)
        accuracy = f"train_{self.kind.train_accuracy}"
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / samples, accuracy: correct / max(seen, 1)}
        return row if self.stages == 1 else {**row, "stage": epoch // config.epochs + 1}

    def _check_finite(self, epoch: int, lr: float) -> None:
        """Stop before a checkpoint or task file could hold NaN or infinite tuned tensors."""
        bad = non_finite_tensors(self.model.tuned_state_dict())
        if bad:
            raise TrainingError(f"tuned tensor {bad[0]} became non-finite in epoch {epoch + 1} (lr {lr:.3g}); "
                                "nothing saved for this epoch; lower --lr or set --grad-clip")

    def _select(self, epoch: int, value: float) -> None:
        """Keep the tuned tensors of the best validation epoch (never chosen by test)."""
        if self.config.eval_split == "test":
            return  # test is reported, never used to choose
        metric = self.kind.selection_metric
        if self.best is None or value > self.best[metric]:
            self.best = {"epoch": epoch + 1, metric: value}
            self.best_state = {k: v.clone().cpu() for k, v in self.model.tuned_state_dict().items()}

    def _state(self, next_epoch: int) -> dict[str, Any]:
        return {
            "next_epoch": next_epoch,
            "tuned": {k: v.cpu() for k, v in self.model.tuned_state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "best": self.best,
            "best_state": self.best_state,
            "prompt_init": self.prompt_init,
            "stages": self.stage_records,
            "initial": self.initial,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["tuned"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch, self.best, self.best_state = state["next_epoch"], state["best"], state["best_state"]
        self.prompt_init = state.get("prompt_init")
        self.stage_records = state.get("stages", [])
        self.initial = state.get("initial", self.initial)  # with a prototype init, the prototypes drawn at start

    def _finish(self, seconds: float) -> dict[str, Any]:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state, strict=False)
        metric = self.kind.selection_metric
        summary = {
            "selected_epoch": self.best["epoch"] if self.best else self.total_epochs,
            "selected_by": f"{self.config.eval_split} {metric}" if self.best else "last epoch",
            f"val_{metric}": self.best[metric] if self.best else None,
            "train_seconds_this_session": round(seconds, 2),
            "features_cached": self.features_cached,
            "prompt_init": self.prompt_init,
            "skipped_images": self.skipped_images,
            "tuned_parameters": sum(p.numel() for p in self.model.trainable_parameters().values()),
            "head_parameters": sum(p.numel() for p in self.model.head.parameters() if p.requires_grad),
            "normalize": {"rule": self.config.normalize, "mean": list(self.spec.mean), "std": list(self.spec.std)},
        }
        if self.stage_records:
            summary["stages"] = self.stage_records
        if self.ctx.is_main:
            path = save(self.model, self.run_dir / TASK_FILE)
            summary["task_file_bytes"] = path.stat().st_size
            write_json(summary, self.run_dir / "summary.json")
            self.log.close()
        return summary


@contextmanager
def _compile_errors(compiling: bool) -> Iterator[None]:
    """Turn a torch.compile failure into one line that names the way out."""
    try:
        yield
    except TorchDynamoException as exc:
        if not compiling:
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VptuneError(f"torch.compile failed ({reason}); run without --compile") from exc


def _epoch_line(row: dict[str, Any], kind: TaskType) -> str:
    parts = [f"epoch {row['epoch']}", f"loss {row['train_loss']:.4f}"]
    for key in (f"train_{kind.train_accuracy}", f"val_{kind.selection_metric}"):
        if key in row:
            parts.append(f"{key.replace('_', ' ')} {row[key]:.4f}")
    return " | ".join(parts + [f"{row['seconds']:.0f}s"])


def _check_fresh(run_dir: Path) -> None:
    if (run_dir / CHECKPOINT).exists() or (run_dir / TASK_FILE).exists():
        raise VptuneError(f"run folder '{run_dir}' already holds a run; add --resume to continue it or pick another --out")


def _resumed_config(config: TrainConfig, run_dir: Path) -> TrainConfig:
    """The run's own config, with `config`'s runtime settings; other differences raise VptuneError."""
    saved = TrainConfig.from_dict(read_yaml(run_dir / "config.yaml")) if (run_dir / "config.yaml").is_file() else None
    if saved is None:
        raise VptuneError(f"nothing to resume in '{run_dir}': no config.yaml; start without --resume")
    changed = []
    for key, old in saved.to_dict().items():
        new = getattr(config, key)
        if key in ("method_options", "head_options"):
            kind = key.split("_")[0]
            changed += [(f"{kind} option {k}", old.get(k), v) for k, v in new.items() if old.get(k) != v]
        elif key not in RUNTIME_KEYS + ("out",) and new != old and not (key in RESOLVED_KEYS and new is None):
            changed.append((key, old, new))
    if changed:
        listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changed)
        raise VptuneError(f"--resume keeps the settings of '{run_dir}', but these differ: {listed}; "
                          "drop them, or train into a new --out")
    runtime = [(key, getattr(saved, key), getattr(config, key)) for key in RUNTIME_KEYS
               if getattr(saved, key) != getattr(config, key)]
    if runtime:
        logger.info("resuming '%s' with %s (runtime settings; the run's others are kept)", run_dir,
                    ", ".join(f"{key} {new!r} (was {old!r})" for key, old, new in runtime))
    for key in RUNTIME_KEYS + ("out",):
        setattr(saved, key, getattr(config, key))
    return saved
