"""Tuning methods: one module each, registered by name."""

from .base import Method, available_methods, get_method, options_from_text
from . import adapter, bias, full, linear, lora, mlp, partial, sidetune, ssf, vpt  # noqa: F401  (registration)

__all__ = ["Method", "available_methods", "get_method", "options_from_text"]
