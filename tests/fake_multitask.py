"""TEMPORARY stand-in with the MultiTask API until the real one lands."""
from __future__ import annotations
import io
from dataclasses import dataclass
import torch
from PIL import Image
import vptune
from vptune.backbones import fingerprint
from vptune.data import build_transform
from vptune.engine.loaders import input_spec
from vptune.errors import CheckpointMismatchError, VptuneError


@dataclass
class TaskInfo:
    name: str
    method: str
    class_names: list
    bytes: int
    file: str


@dataclass
class Prediction:
    label: str
    index: int
    score: float


class MultiTask:
    def __init__(self, backbone=None, *, device="cpu"):
        self.tasks, self._models, self._fp = {}, {}, None

    def add(self, name, path):
        try:
            model = vptune.load(path).eval()
        except VptuneError:
            raise
        except Exception as err:
            raise VptuneError(f"bad file {err}") from err
        fp = fingerprint(model.backbone)
        if self._fp is not None and fp != self._fp:
            raise CheckpointMismatchError("other backbone")
        self._fp = fp
        spec = input_spec(model.backbone, "vtab")
        self._models[name] = (model, build_transform("vtab", spec.img_size, spec.mean, spec.std, train=False))
        import os
        self.tasks[name] = TaskInfo(name, model.config["method"], model.class_names, os.path.getsize(path), str(path))
        return self.tasks[name]

    def remove(self, name):
        del self.tasks[name], self._models[name]

    def predict(self, images, names, top_k=5):
        out = []
        for image, name in zip(images, names):
            if name not in self.tasks:
                raise VptuneError("unknown task")
            model, transform = self._models[name]
            with torch.no_grad():
                p = model(transform(image).unsqueeze(0)).softmax(1)[0]
            top = p.topk(min(top_k, len(p)))
            out.append([Prediction(model.class_names[i], i, s) for s, i in zip(top.values.tolist(), top.indices.tolist())])
        return out
