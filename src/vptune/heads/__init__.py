"""Heads: one module per kind (classification on pooled features, segmentation on patch tokens), registered by name."""

from .base import TASK_TYPES, Head, SegmentationHead, available_heads, get_head
from . import linear, mlp, setr  # noqa: F401  (registration)

__all__ = ["TASK_TYPES", "Head", "SegmentationHead", "available_heads", "get_head"]
