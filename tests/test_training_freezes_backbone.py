"""Optimizer steps move only the tuned tensors."""

from __future__ import annotations

import pytest
import torch

import vptune

from conftest import tiny_vit


@pytest.mark.parametrize("method", ["vpt-deep", "vpt-shallow", "linear"])
def test_backbone_bit_identical_after_steps(method, images):
    model = vptune.create(tiny_vit(), method, 4, **({"num_prompts": 3} if method != "linear" else {}))
    frozen = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    tuned = {k: v.clone() for k, v in model.trainable_parameters().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.01)
    labels = torch.tensor([0, 1, 3])
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, frozen[name]), name
    for name, value in model.trainable_parameters().items():
        assert not torch.equal(value, tuned[name]), f"{name} did not train"
