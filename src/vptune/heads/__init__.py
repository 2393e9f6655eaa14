"""Heads: one module per kind (classification on pooled features, segmentation on patch tokens), registered by name."""

from .base import HEADS, Head, SegmentationHead, available_heads, get_head
from . import linear, mlp, setr  # noqa: F401  (registration)

__all__ = ["HEADS", "Head", "SegmentationHead", "available_heads", "get_head"]
