"""Serving tuned tasks: one task's predictor, and many tasks on one frozen backbone."""

from .images import Prediction
from .multitask import MultiTask, TaskInfo
from .predictor import Predictor

__all__ = ["MultiTask", "Prediction", "Predictor", "TaskInfo"]
