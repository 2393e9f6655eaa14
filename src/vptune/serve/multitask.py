"""Many tasks on one frozen backbone: a batch mixes tasks, one backbone forward serves them all.

Each task's method says what it contributes to a forward shared with other tasks
(`Method.shared_part`: per-sample prompts, then its own head), and the backbone's family
supplies that batched forward (`model.batched_forward`: for ViTs per-sample prompts at every
prompted block, padded slots masked out of attention). Tasks whose method needs a forward of
its own run as per-task sub-batches through the task's own model (see `TaskInfo.shared`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from ..backbones import build_backbone, fingerprint
from ..errors import TaskFileError, VptuneError
from ..methods import SharedPart, get_method
from ..model import TunedModel, batched_forward
from ..persistence import load, read_description
from ..tasks import TaskType, get_task_type
from .images import ImageInput, Prediction, best_classes, prepare_image

# What a broken file or a mismatched description raises while it is read and rebuilt.
_LOAD_ERRORS = (VptuneError, SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError)


@dataclass(frozen=True)
class TaskInfo:
    """A loaded task: its method, classes, per-task bytes, source file (None for a model
    passed in), whether it runs in the shared backbone forward (`shared`) or as its own
    sub-batch, and the memory its own tensors take."""

    name: str
    method: str
    class_names: list[str]
    bytes: int
    file: str | None
    shared: bool
    memory: int = 0  # bytes of tensors the task holds beyond the shared backbone


@dataclass(frozen=True)
class LoadedTask:
    """A task read from its file (`MultiTask.read`), ready to `insert`."""

    name: str
    model: TunedModel
    file: str | None
    size: int
    memory: int


class MultiTask:
    """Serve many per-task files of one backbone from a single frozen copy of it.

    `backbone` is a built timm model, a backbone id (built at the first `add` with that
    file's recorded image size and architecture), or None: the first file added brings its own. Tasks whose
    file was made on other weights are refused with TaskFileError, as are corrupt files
    and unknown task names; tasks already loaded keep working.
    """

    def __init__(self, backbone: str | nn.Module | None = None, *, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self._backbone_id = backbone if isinstance(backbone, str) else None
        self.backbone: nn.Module | None = None
        self.fingerprint: str | None = None
        self._backbone_storages: set[int] = set()
        if isinstance(backbone, nn.Module):
            self._set_backbone(backbone)
        self._models: dict[str, TunedModel] = {}
        self._tasks: dict[str, TaskInfo] = {}
        self._parts: dict[str, SharedPart] = {}

    @property
    def tasks(self) -> dict[str, TaskInfo]:
        """The loaded tasks by name, in the order they were added."""
        return dict(self._tasks)

    def add(self, name: str, path_or_model: str | os.PathLike | TunedModel) -> TaskInfo:
        """Load a task under `name` (a per-task file or a `TunedModel`); TaskFileError when it cannot join."""
        return self.insert(self.read(name, path_or_model))

    def read(self, name: str, path_or_model: str | os.PathLike | TunedModel) -> LoadedTask:
        """Task `name` built on this MultiTask's backbone, not yet served: the slow half of `add`.

        It changes nothing served (except the backbone, which the first task brings), so a
        caller may read while batches run, even a new version of a served task, and `insert`
        under its own lock. Raises TaskFileError.
        """
        if isinstance(path_or_model, TunedModel):
            model, file, size = self._adopt(path_or_model), None, _tensor_bytes(path_or_model)
        else:
            file = str(path_or_model)
            try:
                model, size = self._load(Path(file)), os.path.getsize(file)
            except TaskFileError:
                raise
            except _LOAD_ERRORS as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise TaskFileError(f"cannot add task '{name}' from '{file}': {reason}") from exc
        model = model.to(self.device).eval()
        return LoadedTask(name, model, file, size, _own_bytes(model, self._backbone_storages))

    def insert(self, task: LoadedTask) -> TaskInfo:
        """Serve a task `read` returned; TaskFileError if its name is taken meanwhile."""
        if task.name in self._tasks:
            raise TaskFileError(f"task '{task.name}' is already loaded; remove('{task.name}') first to replace it")
        model = task.model
        self._models[task.name] = model
        part = self._shared_part(model)
        if part is not None:
            self._parts[task.name] = part
        info = TaskInfo(task.name, model.config["method"], list(model.class_names), task.size, task.file,
                        part is not None, task.memory)
        self._tasks[task.name] = info
        return info

    def remove(self, name: str) -> None:
        """Unload task `name`; TaskFileError if there is none."""
        self._require([name])
        del self._models[name], self._tasks[name]
        self._parts.pop(name, None)

    def model(self, name: str) -> TunedModel:
        """Task `name`'s own model (its prompts and head; for a sub-batched task, its whole forward)."""
        self._require([name])
        return self._models[name]

    def prepare(self, image: ImageInput, task_name: str) -> torch.Tensor:
        """The input `(3, H, W)` of one image, prepared as task `task_name`'s evaluation did."""
        self._require([task_name])
        return prepare_image(image, self._models[task_name].input_spec)

    @torch.no_grad()
    def logits(self, batch: torch.Tensor, task_names: Sequence[str]) -> list[torch.Tensor]:
        """Logits of each prepared image `(B, 3, H, W)` for its task (`task_names[i]`), as a list of B vectors.

        One backbone forward serves every shared task in the batch; other tasks run as
        one sub-batch each.
        """
        if batch.dim() != 4 or batch.shape[0] != len(task_names):
            raise VptuneError(
                f"need one task name per image: a batch of shape {tuple(batch.shape)} and {len(task_names)} names"
            )
        self._require(task_names)
        if self.device.type == "cuda" and batch.device.type == "cpu":
            batch = batch.pin_memory()  # page-locked, so the copy is one DMA that overlaps the host's work
        batch = batch.to(self.device, non_blocking=True)
        samples: dict[str, list[int]] = {}
        for i, name in enumerate(task_names):
            samples.setdefault(name, []).append(i)
        groups = {name: torch.tensor(rows, device=self.device) for name, rows in samples.items()}
        out: list[torch.Tensor | None] = [None] * len(task_names)
        shared = [name for name in groups if self._tasks[name].shared]
        if shared:
            self._shared_logits(batch, {name: groups[name] for name in shared}, out)
        for name in groups:
            if not self._tasks[name].shared:
                _scatter(out, groups[name], self._models[name](batch[groups[name]]))
        return out

    def predict(
        self, images: Sequence[ImageInput], task_names: Sequence[str], top_k: int = 5
    ) -> list[list[Prediction]]:
        """The `top_k` classes of each image for its task, best first, with its task type's scores
        (softmax probabilities; sigmoid per class for multi-label tasks)."""
        if len(images) != len(task_names):
            raise VptuneError(f"need one task name per image: {len(images)} images and {len(task_names)} names")
        if not images:
            return []
        return self.predict_prepared([self.prepare(image, name) for image, name in zip(images, task_names)],
                                     task_names, top_k)

    def predict_prepared(
        self, inputs: Sequence[torch.Tensor], task_names: Sequence[str], top_k: int = 5
    ) -> list[list[Prediction]]:
        """`predict` for images already prepared (`prepare`, e.g. on other threads), one `(3, H, W)` each."""
        logits = self.logits(torch.stack(list(inputs)), task_names)
        return [best_classes(self._kind(name).scores(row), self._models[name].class_names, top_k)
                for row, name in zip(logits, task_names)]

    def _shared_logits(self, batch: torch.Tensor, groups: dict[str, torch.Tensor], out: list) -> None:
        # The shared tasks' samples, in one batch; each group's rows are positions in it.
        order = torch.cat(list(groups.values()))
        images = batch[order]
        local, start = {}, 0
        for name, rows in groups.items():
            local[name] = torch.arange(start, start + len(rows), device=self.device)
            start += len(rows)
        features = self._batched(images, [(self._parts[name].prompts, local[name]) for name in groups])
        for name, rows in groups.items():
            _scatter(out, rows, self._parts[name].head(images[local[name]], features[local[name]]))

    def _load(self, path: Path) -> TunedModel:
        description = read_description(path)
        _require_classifier(f"'{path}'", description.get("task_type", "classification"))
        backbone, weights = self.backbone, self.fingerprint
        if backbone is None:
            backbone, _ = build_backbone(
                self._backbone_id or description["backbone"], pretrained=description["pretrained"],
                img_size=description["img_size"], arch=description["arch"],
            )
            weights = fingerprint(backbone)
        self._check_weights(f"'{path}'", description["backbone"], description["backbone_fingerprint"], weights)
        # A method that trains or injects backbone tensors gets its own copy of the backbone.
        own = get_method(description["method"])[0].changes_backbone
        model = load(path, copy.deepcopy(backbone) if own else backbone, backbone_fingerprint=weights)
        if own:
            _share_frozen_tensors(model.backbone, backbone)
        if self.backbone is None:
            self._set_backbone(backbone, weights)
        return model

    def _adopt(self, model: TunedModel) -> TunedModel:
        _require_classifier("the model", model.task_type)
        if _changes_backbone(model) and model.backbone is (self.backbone or model.backbone):
            raise TaskFileError(
                f"the '{model.config['method']}' model changes the weights of the backbone it holds, so that "
                "backbone cannot be the shared one; create the model on its own copy (copy.deepcopy) of the backbone"
            )
        if self.backbone is None:
            self._set_backbone(model.backbone, model.backbone_fingerprint)
        self._check_weights("the model", model.config["backbone"], model.backbone_fingerprint, self.fingerprint)
        return model

    def _set_backbone(self, backbone: nn.Module, weights: str | None = None) -> None:
        self.backbone = backbone.to(self.device).eval()
        self.fingerprint = weights or fingerprint(backbone)
        self._backbone_storages = {t.untyped_storage().data_ptr() for t in _tensors(self.backbone)}
        # The shared forward needs ViT blocks it can compute row by row with a key mask.
        self._batched = batched_forward(backbone)

    def _check_weights(self, what: str, backbone_id: str, theirs: str, ours: str) -> None:
        if theirs != ours:
            raise TaskFileError(
                f"{what} was tuned on backbone '{backbone_id}' (weights {theirs}), but this MultiTask's backbone "
                f"has weights {ours}; serve it with a MultiTask of its own backbone"
            )

    def _shared_part(self, model: TunedModel) -> SharedPart | None:
        """What the task adds to the shared batched forward, or None when it runs as its own sub-batch."""
        if self._batched is None:
            return None
        return get_method(model.config["method"])[0].shared_part(model)

    def _kind(self, name: str) -> TaskType:
        return get_task_type(self._models[name].task_type)

    def _require(self, names: Sequence[str]) -> None:
        unknown = sorted(set(names) - set(self._tasks))
        if unknown:
            loaded = ", ".join(self._tasks) or "none"
            raise TaskFileError(f"no task named {', '.join(map(repr, unknown))}; loaded tasks: {loaded}")


def _scatter(out: list, rows: torch.Tensor, logits: torch.Tensor) -> None:
    for row, vector in zip(rows.tolist(), logits.float()):
        out[row] = vector


def _changes_backbone(model: TunedModel) -> bool:
    """Whether the model's method trains or adds tensors inside its backbone."""
    return get_method(model.config["method"])[0].changes_backbone


def _share_frozen_tensors(own: nn.Module, shared: nn.Module) -> None:
    """Point `own`'s frozen parameters at `shared`'s equal ones of the same name, so a task whose
    method changes some backbone tensors keeps its own copy of those only."""
    twins = dict(shared.named_parameters())
    for module_name, module in own.named_modules():
        for name, param in list(module.named_parameters(recurse=False)):
            twin = twins.get(f"{module_name}.{name}" if module_name else name)
            if not param.requires_grad and twin is not None and twin.shape == param.shape and torch.equal(twin, param):
                setattr(module, name, twin)


def _own_bytes(model: nn.Module, shared: set[int]) -> int:
    """Bytes of `model`'s tensors whose storage is not among `shared` (each storage counted once)."""
    own = {}
    for tensor in _tensors(model):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in shared:
            own[storage.data_ptr()] = storage.nbytes()
    return sum(own.values())


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def _tensor_bytes(model: TunedModel) -> int:
    return sum(t.numel() * t.element_size() for t in model.tuned_state_dict().values())


def _require_classifier(what: str, task_type: str) -> None:
    if not get_task_type(task_type).scores_classes:
        raise TaskFileError(f"{what} is a {task_type} task; MultiTask serves tasks that score classes per image")
