"""One task's predictor: images in, top-k class names and probabilities out."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ..errors import VptuneError
from ..model import TunedModel
from ..persistence import load
from ..tasks import get_task_type
from .images import ImageInput, Prediction, best_classes, prepare_image


class Predictor:
    """Classify images with one tuned model, preparing them exactly as its evaluation did.

    `model_or_path` is a `TunedModel` or a per-task `.safetensors` file; the input pipeline
    is the one the model records (`model.input_spec`: protocol, size, resize/crop rule,
    normalisation). Raises VptuneError subclasses for a bad file or image.
    """

    def __init__(self, model_or_path: TunedModel | str | os.PathLike, *, device: str | torch.device = "cpu") -> None:
        model = model_or_path if isinstance(model_or_path, TunedModel) else load(model_or_path)
        self.kind = get_task_type(model.task_type)
        if not self.kind.scores_classes:
            raise VptuneError(f"Predictor classifies images; this model is a {model.task_type} task")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.spec = model.input_spec

    @property
    def class_names(self) -> list[str]:
        return self.model.class_names

    def prepare(self, image: ImageInput) -> torch.Tensor:
        """The model input `(3, H, W)` of one image (see `prepare_image`)."""
        return prepare_image(image, self.spec)

    @torch.no_grad()
    def logits(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Logits `(len(images), num_classes)`."""
        batch = torch.stack([self.prepare(image) for image in images]).to(self.device)
        return self.model(batch).float().cpu()

    def predict(self, images: Sequence[ImageInput], top_k: int = 5) -> list[list[Prediction]]:
        """The `top_k` classes of each image, best first, with their scores (softmax probabilities; for
        multi-label tasks each class's sigmoid probability, a class counting as present above 0.5)."""
        return [best_classes(self.kind.scores(row), self.class_names, top_k) for row in self.logits(images)]
