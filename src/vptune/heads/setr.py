"""SETR decoders on a ViT's patch tokens (Zheng et al., CVPR 2021), as mmsegmentation configures them.

`setr-pup` (progressive upsampling) and `setr-naive` are both mmsegmentation's SETRUPHead
with other settings: a LayerNorm on the tokens, `num_convs` stages of conv (no bias) +
BatchNorm + ReLU + bilinear upsampling by `up_scale`, then a 1x1 classifier conv. The
ADE20K configs (setr_vit-l_pup_8xb2-160k_ade20k-512x512, setr_vit-l_naive_...) read the last
block with the main decoder and blocks 10, 15, 20 of ViT-L's 24 with auxiliary decoders
that only train (loss weight 0.4):

| head       | main: convs, up_scale, kernel | auxiliary: convs, up_scale, kernel |
|------------|-------------------------------|------------------------------------|
| setr-pup   | 4, 2, 3x3 (16x the grid)      | 2, 4, 3x3                          |
| setr-naive | 1, 4, 1x1                     | 2, 4, 1x1                          |

Logits are resized bilinearly to the input size, as mmsegmentation does before its loss
and at inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HeadError
from .base import Head, SegmentationHead, register

# ViT-L blocks (1-based, of 24) the ADE20K configs' auxiliary heads read; scaled to other depths.
AUX_BLOCKS_OF_24 = (10, 15, 20)


@dataclass
class SetrOptions:
    channels: int = field(default=256, metadata={"help": "channels of the decoder convs", "min": 1})
    block: int | None = field(
        default=None, metadata={"help": "block the main decoder reads (1-based; default last)", "min": 1}
    )
    aux_blocks: list[int] | None = field(
        default=None,
        metadata={"help": "blocks of the training-only auxiliary decoders (1-based; default depth*10/24, "
                          "depth*15/24, depth*20/24 rounded; [] for none)", "min": 1},
    )
    aux_weight: float = field(default=0.4, metadata={"help": "loss weight of each auxiliary decoder", "min": 0})


class UpDecoder(nn.Module):
    """mmsegmentation's SETRUPHead: LayerNorm, `num_convs` x (conv, BN, ReLU, upsample), 1x1 classifier."""

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, *, num_convs: int, up_scale: int, kernel_size: int
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_channels, eps=1e-6)
        stages: list[nn.Module] = []
        for index in range(num_convs):
            conv = nn.Conv2d(
                in_channels if index == 0 else channels, channels, kernel_size,
                padding=(kernel_size - 1) // 2, bias=False,
            )
            # mmcv ConvModule's init: Kaiming normal, fan_out, for a ReLU.
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            stages.append(nn.Sequential(
                conv,
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.Upsample(scale_factor=up_scale, mode="bilinear", align_corners=False),
            ))
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        logits = self.classifier(self.stages(x))
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits


class SetrDecoders(SegmentationHead):
    """The main decoder on block `block` and auxiliary decoders on `aux_blocks` (0-based)."""

    def __init__(
        self, main: UpDecoder, block: int, aux: list[UpDecoder], aux_blocks: list[int], aux_weight: float
    ) -> None:
        super().__init__()
        self.decode = main
        self.aux = nn.ModuleList(aux)
        self.block = block
        self.aux_blocks = list(aux_blocks)
        self.aux_weight = aux_weight

    def blocks(self, aux: bool = False) -> tuple[int, ...]:
        return (self.block, *self.aux_blocks) if aux else (self.block,)

    def forward(
        self, maps: dict[int, torch.Tensor], size: tuple[int, int], aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        logits = self.decode(maps[self.block], size)
        if not aux:
            return logits
        return logits, [head(maps[block], size) for head, block in zip(self.aux, self.aux_blocks)]


class _Setr(Head):
    task_type = "segmentation"
    Options = SetrOptions
    # (num_convs, up_scale, kernel_size) of the main and of each auxiliary decoder.
    main: ClassVar[tuple[int, int, int]]
    aux: ClassVar[tuple[int, int, int]]

    def build(self, backbone: nn.Module, num_classes: int, options: SetrOptions) -> nn.Module:
        depth = len(getattr(backbone, "blocks", ()))
        if depth == 0 or not hasattr(backbone, "embed_dim"):
            raise HeadError(
                f"head '{self.name}' reads ViT patch tokens; {type(backbone).__name__} has no ViT blocks"
            )
        if options.block is None:
            options.block = depth
        if options.aux_blocks is None:
            options.aux_blocks = [max(1, round(depth * b / 24)) for b in AUX_BLOCKS_OF_24]
        for block in [options.block, *options.aux_blocks]:
            if block > depth:
                raise HeadError(
                    f"head '{self.name}': block {block!r} is not a block number from 1 to {depth} (1-based)"
                )
        options.aux_blocks = list(options.aux_blocks)

        def decoder(convs: int, up_scale: int, kernel_size: int) -> UpDecoder:
            return UpDecoder(backbone.embed_dim, options.channels, num_classes,
                             num_convs=convs, up_scale=up_scale, kernel_size=kernel_size)

        return SetrDecoders(
            decoder(*self.main), options.block - 1,
            [decoder(*self.aux) for _ in options.aux_blocks], [b - 1 for b in options.aux_blocks],
            float(options.aux_weight),
        )


@register
class SetrPup(_Setr):
    name = "setr-pup"
    main = (4, 2, 3)
    aux = (2, 4, 3)
    summary = "SETR progressive upsampling: four 3x3 conv-BN-ReLU-2x stages, aux decoders on three earlier blocks"


@register
class SetrNaive(_Setr):
    name = "setr-naive"
    main = (1, 4, 1)
    aux = (2, 4, 1)
    summary = "SETR naive: 1x1 conv-BN-ReLU, 1x1 classifier, bilinear upsampling; aux decoders on earlier blocks"
