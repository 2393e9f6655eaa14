"""Visual Fourier Prompt Tuning (Zeng et al., NeurIPS 2024): VPT-Deep where a share of each block's prompts
enters as the real part of its 2-D FFT, on ViTs (prompts/vit_fourier.py) and Swin (prompts/swin_fourier.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import TunedModel
from ..prompts import require_family
from ..prompts.prototypes import init_option, init_samples_option
from ..prompts.swin_fourier import FourierSwinPrompt
from ..prompts.vit_fourier import FourierVitPrompt, fourier_count
from .base import NEW_TENSOR_LRS, Method, SharedPart, register


@dataclass
class VfptOptions:
    num_prompts: int = field(default=10, metadata={"help": "prompt tokens per block", "min": 1})
    fourier_fraction: float = field(
        default=0.5,
        metadata={"help": "share of each block's prompts that enter as Re(FFT2), the first "
                          "floor(num_prompts * fourier_fraction); 0 is vpt-deep", "min": 0.0, "max": 1.0},
    )
    prompt_dropout: float = field(
        default=0.1, metadata={"help": "dropout on the prompts, before the FFT", "min": 0.0, "below": 1.0})
    # Prototypes fill the learnable prompts; the Fourier share then enters as their transform.
    init: str = init_option()
    init_samples: int = init_samples_option()


@register
class Vfpt(Method):
    name = "vfpt"
    Options = VfptOptions
    summary = "vpt-deep prompts, a share of each block's entering as the real part of their 2-D FFT"
    # docs/learning-rates.md: 1e-2 did as well within seed noise, 2e-2 diverged; the grid spans both sides.
    default_lr = 5e-3
    lr_grid = NEW_TENSOR_LRS

    def attach(self, model: TunedModel, options: VfptOptions) -> None:
        backbone = model.backbone
        hint = "Fourier prompts are prompt tokens; a ConvNet's prompts are a pixel border: use vpt-shallow"
        family = require_family(backbone, self.name, ("vit", "swin"), hint)
        prompt = FourierSwinPrompt if family.name == "swin" else FourierVitPrompt
        model.prompt = prompt(
            backbone,
            num_prompts=options.num_prompts,
            fourier_prompts=fourier_count(options.num_prompts, options.fourier_fraction),
            dropout=options.prompt_dropout,
        )

    def shared_part(self, model: TunedModel) -> SharedPart | None:
        """ViT prompts are prepended tokens, like vpt-deep's: they join the backbone's batched forward per
        sample. Swin has no forward shared by several tasks' samples."""
        if not model.prompt.shares_batch:
            return None
        return SharedPart(model.prompt, model.classify)
