"""vptune: Visual Prompt Tuning and parameter-efficient baselines for pretrained vision backbones."""

from ._version import __version__
from .api import create
from .persistence import load, save

__all__ = ["__version__", "create", "load", "save"]
