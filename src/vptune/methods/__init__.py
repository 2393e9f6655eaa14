"""Tuning methods: one module each, registered by name."""

from .base import METHODS, Method, SharedPart, available_methods, get_method, options_from_text
from . import adapter, bias, e2vpt, full, linear, lora, mlp, partial, sidetune, ssf, vfpt, vpt  # noqa: F401  (registration)
from . import adapter_plus, adaptformer  # noqa: F401  (registration)
from .vpt import parse_block_range

__all__ = ["METHODS", "Method", "SharedPart", "available_methods", "get_method", "options_from_text",
           "parse_block_range"]
