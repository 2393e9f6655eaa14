"""vptune: Visual Prompt Tuning and parameter-efficient baselines for pretrained vision backbones."""

from ._version import __version__
from .api import create
from .persistence import load, save
from .serve import MultiTask, Predictor

__all__ = ["MultiTask", "Predictor", "__version__", "create", "load", "save"]
