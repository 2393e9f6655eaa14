"""Conversion of weights shipped inside pip packages into timm state dicts."""
