"""TunedModel: a frozen timm backbone, the tensors a method adds, and a head (classification or segmentation)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .backbones import BackboneRef, fingerprint
from .data.transforms import InputSpec, input_spec
from .errors import HeadError
from .heads import SegmentationHead, get_head
from .option_fields import options_dict
from .prompts import BatchedForward, backbone_family, prompted_features
from .prompts.prototypes import PromptInit, initial_prompts

# Set on a module inside the frozen backbone that must still follow train()/eval(), e.g. LoRA dropout.
FOLLOWS_TRAIN_MODE = "vptune_follows_train_mode"
# timm ViT modules after the blocks; a segmentation head reads block outputs instead.
UNREAD_BY_SEGMENTATION = ("norm", "fc_norm", "attn_pool", "head", "head_drop")


class TunedModel(nn.Module):
    """A backbone adapted to one task.

    `backbone` is the timm model (frozen, kept in eval mode unless the method trains it),
    `prompt` the method's prompt module (or None), `side` a module that blends the image into
    the features (or None) and `head` the head of kind `head_kind` (heads/): a classifier on
    the pooled features, or a decoder on the patch tokens of chosen blocks (`reads_blocks`).
    `task_type` names the task type (tasks/) it was made for, by default its head's. A method
    decides which tensors train; `tuned_state_dict()` is what a per-task file stores.
    `backbone_fingerprint` may pass the backbone's known fingerprint (see backbones.fingerprint)
    to skip hashing its weights again.
    """

    def __init__(
        self,
        backbone: nn.Module,
        ref: BackboneRef,
        num_classes: int,
        *,
        method: str,
        options: dict[str, Any],
        class_names: list[str] | None = None,
        head: str = "linear",
        head_options: dict[str, Any] | None = None,
        task_type: str | None = None,
        backbone_fingerprint: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone_fingerprint = backbone_fingerprint or fingerprint(backbone)
        self.register_module("prompt", None)
        self.register_module("side", None)
        self.output = "cls"
        # A non-uniform prompt init the method's options ask for, applied by `init_prompts` before training.
        self.prompt_init: PromptInit | None = None
        self.backbone_trains = False
        self.grad_checkpointing = False
        self.config: dict[str, Any] = {
            "backbone": ref.id,
            "arch": ref.arch,
            "img_size": ref.img_size,
            "pretrained": ref.pretrained,
            "method": method,
            "options": options,
            "num_classes": num_classes,
            "class_names": class_names or [str(i) for i in range(num_classes)],
            # The protocol's preparation; training records its own run's (set_input_spec).
            "input": input_spec(backbone, "vtab").to_dict(),
            "task_type": task_type or get_head(head).task_type,
        }
        self.set_head(head, head_options or {})

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]

    @property
    def task_type(self) -> str:
        """The registered task type the model was made for (`classification`, `segmentation`, ...)."""
        return self.config["task_type"]

    @property
    def reads_blocks(self) -> bool:
        """Whether the head reads the patch tokens of chosen blocks (segmentation heads), not pooled features."""
        return isinstance(self.head, SegmentationHead)

    @property
    def head_kind(self) -> str:
        """The registered head kind, e.g. `linear` or `setr-pup`."""
        return self.config["head"]["kind"]

    def set_head(self, kind: str, options: dict[str, Any]) -> None:
        """Replace the head with a new one of `kind` (heads/); raises HeadError for bad options."""
        spec = get_head(kind)
        parsed = spec.parse_options(dict(options))
        self.head = spec.build(self.backbone, self.num_classes, parsed)
        self.config["head"] = {"kind": kind, **options_dict(parsed)}

    def fit_head(self) -> None:
        """Called once the method is attached: check that the head fits it, and for a head that reads
        blocks freeze the backbone tensors it never reads.

        Such a head reads each block's patch tokens in one prompted forward: it needs a backbone
        family that offers them (ViT), no side network, and the default `output`. It reads block
        outputs, so the final norm, timm's pooling and blocks after the last one read stay frozen even
        where a method (bias, partial-k, full) would tune them; they would get no gradient.
        Raises HeadError.
        """
        if not self.reads_blocks:
            return
        method = self.config["method"]
        family = backbone_family(self.backbone)
        if family is None or not family.reads_blocks:
            raise HeadError(
                f"head '{self.head_kind}' reads ViT patch tokens; {type(self.backbone).__name__} is not a ViT"
            )
        if self.side is not None:
            raise HeadError(f"method '{method}' changes pooled features only; use it with a classification head")
        if self.output != "cls":
            raise HeadError(f"output '{self.output}' pools features for a classifier; "
                            f"head '{self.head_kind}' reads every patch token, leave output at cls")
        read = max(self.head.blocks(aux=True))
        for name, param in self.backbone.named_parameters():
            first, _, rest = name.partition(".")
            unread = first in UNREAD_BY_SEGMENTATION or (first == "blocks" and int(rest.partition(".")[0]) > read)
            if unread:
                param.requires_grad_(False)

    @property
    def class_names(self) -> list[str]:
        return self.config["class_names"]

    @property
    def input_spec(self) -> InputSpec:
        """How images are prepared for this model (the protocol it was trained and evaluated with);
        `model.input_spec.transform()` is its evaluation transform."""
        return InputSpec.from_dict(self.config["input"])

    def set_input_spec(self, spec: InputSpec) -> None:
        """Record the input pipeline a per-task file of this model carries."""
        self.config["input"] = spec.to_dict()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-head features `(B, num_features)` of a classification model."""
        if self.prompt is None and self.output == "cls":
            # No prompts and the backbone's own pooling: exactly timm's forward.
            features = self.backbone.forward_head(self.backbone.forward_features(images), pre_logits=True)
        else:
            features = prompted_features(
                self.backbone, images, self.prompt, self.output, checkpoint=self.grad_checkpointing
            )
        return self.blend(images, features)

    def blend(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Backbone features `(B, num_features)` with the side network's view of `images` blended in (if any)."""
        return features if self.side is None else self.side(images, features)

    def classify(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Logits of a classification model from its images and their backbone features (side network, head)."""
        return self.head(self.blend(images, features))

    def init_prompts(self, batches: Iterable[torch.Tensor], *, seed: int) -> None:
        """Set the prompts to the prototypes `prompt_init` asks for (the `init` option: mean-pool, max-pool,
        kmeans) of the tokens of the images in `batches` (`(B, 3, H, W)` tensors on the model's device,
        prepared as for evaluation), with every draw from `seed`; nothing for `init=uniform`. Training
        calls it once, on a seeded sample of `init_samples` training images (prompts/prototypes.py)."""
        if self.prompt_init is None:
            return
        target = self.prompt.prototype_target()
        values = initial_prompts(self.backbone, batches, target, self.prompt_init.how, seed)
        with torch.no_grad():
            target.embeddings.copy_(values)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each backbone block in the backward pass: less memory, about a third more time."""
        self.grad_checkpointing = enable
        if hasattr(self.backbone, "set_grad_checkpointing"):
            self.backbone.set_grad_checkpointing(enable)

    def forward(
        self, images: torch.Tensor, *, aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits: `(B, num_classes)`, or `(B, num_classes, H, W)` for segmentation.

        With `aux` a segmentation model also returns its auxiliary decoders' logits, for the
        training loss: `(logits, [aux_logits, ...])`, from the same single forward.
        """
        if not self.reads_blocks:
            return self.head(self.embed(images))
        blocks = self.head.blocks(aux)
        maps = backbone_family(self.backbone).block_maps(self.backbone, images, self.prompt, blocks,
                                                          checkpoint=self.grad_checkpointing)
        return self.head(dict(zip(blocks, maps)), tuple(images.shape[-2:]), aux=aux)

    def train(self, mode: bool = True) -> "TunedModel":
        super().train(mode)
        if not self.backbone_trains:
            # The frozen backbone never uses dropout or drop-path, even while the head trains.
            self.backbone.eval()
            for module in self.backbone.modules():
                if getattr(module, FOLLOWS_TRAIN_MODE, False):
                    module.train(mode)
        return self

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters the method trains, by name."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def no_weight_decay(self) -> set[str]:
        """Names of tensors never weight-decayed: every ndim <= 1 tensor, and what each module declares.

        A module declares its own through timm's `no_weight_decay()` (names relative to itself):
        the backbone's (pos_embed, cls_token, ...) and those of the modules a method adds (prompts).
        """
        names = {name for name, p in self.named_parameters() if p.ndim <= 1}
        for prefix, module in self.named_modules():
            if module is not self and callable(getattr(module, "no_weight_decay", None)):
                names |= {f"{prefix}.{name}" for name in module.no_weight_decay()}
        return names & {name for name, _ in self.named_parameters()}

    def tuned_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors that make this task: trainable parameters and their modules' persistent buffers."""
        trainable = self.trainable_parameters()
        owners = {
            name for name, module in self.named_modules()
            if any(p.requires_grad for p in module.parameters(recurse=False))
        }
        # keep_vars: parameters stay nn.Parameter, so buffers are the other entries.
        return {
            name: tensor.detach()
            for name, tensor in self.state_dict(keep_vars=True).items()
            if name in trainable or (not isinstance(tensor, nn.Parameter) and name.rpartition(".")[0] in owners)
        }


def batched_forward(backbone: nn.Module) -> BatchedForward | None:
    """The forward of `backbone` that runs a batch mixing several tasks' samples (each with the prompts of
    its task's `SharedPart`), or None when its family has none."""
    family = backbone_family(backbone)
    return family.batched_forward(backbone) if family is not None else None
