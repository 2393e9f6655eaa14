"""Training engine: configuration, optimisation, metrics, checkpoints, distributed helpers."""

from .config import TrainConfig
from .evaluate import evaluate_run
from .trainer import train

__all__ = ["TrainConfig", "evaluate_run", "train"]
