"""Where prompts meet a backbone: ViT tokens (and, by family, other backbones)."""
