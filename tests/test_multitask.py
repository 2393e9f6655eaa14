"""MultiTask: many per-task files on one frozen backbone equal each task's own model."""

from __future__ import annotations

import pytest
import timm
import torch
from PIL import Image

import vptune
from vptune.backbones import fingerprint
from vptune.data import input_spec
from vptune.errors import TaskFileError, VptuneError
from vptune.methods import METHODS, Method, SharedPart
from vptune.option_fields import NoOptions
from vptune.prompts import VitPrompt

from conftest import VARIANTS, tiny_vit

TASKS = {
    "deep3": ("vpt-deep", {"num_prompts": 3}),
    "deep5-block2": ("vpt-deep", {"num_prompts": 5, "deep_blocks": (2, 2)}),
    "deep1-blocks1-2": ("vpt-deep", {"num_prompts": 1, "deep_blocks": (1, 2)}),
    "deep4-dim8-blocks2-3": ("vpt-deep", {"num_prompts": 4, "prompt_dim": 8, "deep_blocks": (2, 3)}),
    "shallow2": ("vpt-shallow", {"num_prompts": 2}),
    "shallow6": ("vpt-shallow", {"num_prompts": 6}),
    "e2vpt2-kv3": ("e2vpt", {"num_prompts": 2, "kv_prompts": 3}),
    "e2vpt4-kv1": ("e2vpt", {"num_prompts": 4, "kv_prompts": 1}),
    "linear": ("linear", {}),
    "mlp": ("mlp-2", {}),
    "sidetune": ("sidetune", {"width": 4}),
    # Per-task sub-batches: methods that change backbone weights, other locations and outputs.
    "bias": ("bias", {}),
    "lora": ("lora", {}),
    "adapter": ("adapter", {}),
    "ssf": ("ssf", {}),
    "partial-1": ("partial-1", {}),
    "full": ("full", {}),
    "deep+bias": ("vpt-deep+bias", {"num_prompts": 2}),
    "image-pool": ("vpt-deep", {"num_prompts": 2, "output": "image-pool"}),
    "prompt-pool": ("vpt-shallow", {"num_prompts": 2, "output": "prompt-pool"}),
    "add": ("vpt-shallow", {"location": "add"}),
    "prepend-pixel": ("vpt-shallow", {"num_prompts": 2, "location": "prepend-pixel"}),
    "concat-channel": ("vpt-shallow", {"location": "concat-channel"}),
}
SUB_BATCHED = {"bias", "lora", "adapter", "ssf", "partial-1", "full", "deep+bias", "image-pool", "prompt-pool", "add",
               "prepend-pixel", "concat-channel"}
MIXES = {
    "deep prompt lengths": ["deep3", "deep5-block2", "deep1-blocks1-2"],
    "deep ranges and shallow": ["deep5-block2", "deep4-dim8-blocks2-3", "shallow2", "shallow6"],
    "prompts and linear": ["deep3", "linear", "shallow2"],
    "e2vpt, deep and linear": ["e2vpt2-kv3", "e2vpt4-kv1", "deep3", "linear"],
    "e2vpt alone": ["e2vpt2-kv3"],
    "heads only": ["linear", "mlp", "sidetune"],
    "sub-batches only": sorted(SUB_BATCHED),
    "everything": list(TASKS),
}
BACKBONES = {name: VARIANTS[name] for name in ("plain", "dinov2-registers", "avg-pool")}


def make_task(backbone: torch.nn.Module, name: str, path, seed: int, tasks: dict = TASKS):
    """A per-task file of tasks[name] with random (non-initial) tuned tensors."""
    method, options = tasks[name]
    model = vptune.create(backbone, method, 3 + seed % 4, class_names=None, **options).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.trainable_parameters().values():
            p.add_(0.2 * torch.randn(p.shape, generator=generator))
    return vptune.save(model, path)


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    """Every TASKS file on every BACKBONES variant: {variant: {task: path}}."""
    root = tmp_path_factory.mktemp("serve-tasks")
    return {
        variant: {name: make_task(tiny_vit(**overrides), name, root / f"{variant}-{name}.safetensors", seed)
                  for seed, name in enumerate(TASKS)}
        for variant, overrides in BACKBONES.items()
    }


def own_logits(path, variant: str, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return vptune.load(path, backbone=tiny_vit(**BACKBONES[variant])).eval()(images)


@pytest.mark.parametrize("variant", sorted(BACKBONES))
@pytest.mark.parametrize("mix", sorted(MIXES))
def test_mixed_batch_equals_each_tasks_own_model(task_files, variant, mix):
    serving = vptune.MultiTask(tiny_vit(**BACKBONES[variant]))
    for name in MIXES[mix]:
        info = serving.add(name, task_files[variant][name])
        assert info.shared == (name not in SUB_BATCHED)
    names = [MIXES[mix][i % len(MIXES[mix])] for i in range(2 * len(MIXES[mix]) + 1)][::-1]
    images = torch.randn(len(names), 3, 32, 32, generator=torch.Generator().manual_seed(7))
    logits = serving.logits(images, names)
    for name in set(names):
        rows = [i for i, n in enumerate(names) if n == name]
        expected = own_logits(task_files[variant][name], variant, images[rows])
        torch.testing.assert_close(torch.stack([logits[i] for i in rows]), expected, atol=1e-5, rtol=1e-5)


def test_one_backbone_forward_serves_every_shared_task(task_files):
    backbone = tiny_vit()
    serving = vptune.MultiTask(backbone)
    shared = [name for name in TASKS if name not in SUB_BATCHED]
    for name in shared:
        serving.add(name, task_files["plain"][name])
    calls = []
    backbone.patch_embed.register_forward_hook(lambda *_: calls.append(1))
    serving.logits(torch.randn(len(shared), 3, 32, 32), shared)
    assert len(calls) == 1


def test_replaced_prompts_give_keys_and_values_only(task_files):
    # Full-range deep tasks of two prompt lengths: no block computes a prompt row, the last only [CLS].
    backbone = tiny_vit()
    serving = vptune.MultiTask(backbone)
    rows_seen = []
    for block in backbone.blocks:
        block.mlp.register_forward_hook(lambda module, inputs, output: rows_seen.append(inputs[0].shape[1]))
    serving.add("a", task_files["plain"]["deep3"])
    serving.add("b", make_task(tiny_vit(), "deep3", task_files["plain"]["deep3"].with_name("b.safetensors"), 99))
    serving.logits(torch.randn(2, 3, 32, 32), ["a", "b"])
    tokens = backbone.num_prefix_tokens + backbone.patch_embed.num_patches
    assert rows_seen == [tokens] * (len(backbone.blocks) - 1) + [1]


def test_sub_batched_tasks_leave_the_shared_backbone_alone(task_files):
    backbone = tiny_vit()
    before = fingerprint(backbone)
    serving = vptune.MultiTask(backbone)
    for name in ("bias", "lora", "partial-1", "deep+bias", "deep3"):
        serving.add(name, task_files["plain"][name])
    partial_blocks = serving.model("partial-1").backbone.blocks
    assert partial_blocks[0].mlp.fc1.weight is backbone.blocks[0].mlp.fc1.weight
    assert partial_blocks[-1].mlp.fc1.weight is not backbone.blocks[-1].mlp.fc1.weight
    assert fingerprint(backbone) == before
    # Frozen tensors are shared with the backbone; trained or injected ones are the task's own.
    bias_blocks = serving.model("bias").backbone.blocks
    assert bias_blocks[0].attn.qkv.weight is backbone.blocks[0].attn.qkv.weight
    assert bias_blocks[0].attn.qkv.bias is not backbone.blocks[0].attn.qkv.bias
    assert serving.model("deep3").backbone is backbone
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(torch.stack(serving.logits(images, ["deep3"] * 2)),
                               own_logits(task_files["plain"]["deep3"], "plain", images), atol=1e-5, rtol=1e-5)


def test_models_can_be_added_directly():
    backbone = tiny_vit()
    model = vptune.create(backbone, "vpt-deep", 4, num_prompts=2).eval()
    serving = vptune.MultiTask()
    info = serving.add("m", model)
    assert (info.file, info.shared, info.method) == (None, True, "vpt-deep")
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.stack(serving.logits(images, ["m"] * 3)), model(images), atol=1e-5, rtol=1e-5)


def test_a_model_that_changed_its_backbone_cannot_share_it():
    model = vptune.create(tiny_vit(), "lora", 3)
    with pytest.raises(TaskFileError, match="cannot be the shared one"):
        vptune.MultiTask().add("lora", model)
    serving = vptune.MultiTask(tiny_vit())
    assert not serving.add("lora", model).shared  # on a backbone of its own: a sub-batch
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.stack(serving.logits(images, ["lora"] * 2)), model.eval()(images))


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_other_backbone_and_corrupt_files_are_refused_and_loaded_tasks_keep_working(task_files, tmp_path):
    serving = vptune.MultiTask(tiny_vit())
    serving.add("deep3", task_files["plain"]["deep3"])
    images = torch.randn(2, 3, 32, 32)
    before = torch.stack(serving.logits(images, ["deep3", "deep3"]))

    with pytest.raises(TaskFileError) as error:
        serving.add("other", task_files["dinov2-registers"]["deep3"])
    assert "was tuned on backbone" in one_line(error)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(task_files["plain"]["linear"].read_bytes()[:-100])
    for path, reason in [(garbage, "not a safetensors file"), (truncated, "cannot add task 'broken'"),
                         (tmp_path / "missing.safetensors", "does not exist")]:
        with pytest.raises(TaskFileError) as error:
            serving.add("broken", path)
        assert reason in one_line(error) and str(path) in one_line(error)
    assert issubclass(TaskFileError, VptuneError)
    assert list(serving.tasks) == ["deep3"]
    torch.testing.assert_close(torch.stack(serving.logits(images, ["deep3", "deep3"])), before, atol=0, rtol=0)


def test_task_names_are_checked(task_files):
    serving = vptune.MultiTask(tiny_vit())
    serving.add("linear", task_files["plain"]["linear"])
    with pytest.raises(TaskFileError, match="already loaded"):
        serving.add("linear", task_files["plain"]["linear"])
    with pytest.raises(TaskFileError, match="no task named 'nope'; loaded tasks: linear"):
        serving.logits(torch.randn(1, 3, 32, 32), ["nope"])
    with pytest.raises(VptuneError, match="one task name per image"):
        serving.logits(torch.randn(2, 3, 32, 32), ["linear"])
    serving.remove("linear")
    assert serving.tasks == {}
    with pytest.raises(TaskFileError, match="no task named 'linear'"):
        serving.remove("linear")


def test_first_file_brings_the_backbone_and_predict_prepares_per_task(tmp_path):
    # A checkpoint-file backbone, so files rebuild the same weights by their recorded id.
    torch.manual_seed(0)
    weights = tmp_path / "vit.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=0).state_dict(),
               weights)
    paths = {}
    for name, protocol, method in [("fgvc-task", "fgvc", "vpt-deep"), ("vtab-task", "vtab", "linear")]:
        model = vptune.create(str(weights), method, 3, arch="vit_tiny_patch16_224", img_size=32,
                              class_names=["x", "y", "z"])
        with torch.no_grad():
            for p in model.trainable_parameters().values():
                p.add_(torch.randn_like(p))
        model.set_input_spec(input_spec(model.backbone, protocol))
        paths[name] = vptune.save(model, tmp_path / f"{name}.safetensors")
    serving = vptune.MultiTask()
    for name, path in paths.items():
        serving.add(name, path)
    images = [Image.new("RGB", (48, 30), (10 * i, 200 - 30 * i, 90)) for i in range(4)]
    images[1].paste((255, 255, 255), (0, 0, 20, 30))
    names = ["fgvc-task", "vtab-task", "vtab-task", "fgvc-task"]
    served = serving.predict(images, names, top_k=3)
    for image, name, predictions in zip(images, names, served):
        [alone] = vptune.Predictor(paths[name]).predict([image], top_k=3)
        assert [p.label for p in predictions] == [p.label for p in alone]
        assert [p.score for p in predictions] == pytest.approx([p.score for p in alone], abs=1e-5)
    assert not torch.equal(serving.prepare(images[1], "fgvc-task"), serving.prepare(images[1], "vtab-task"))
    by_id = vptune.MultiTask(str(weights))  # the same weights, named by the checkpoint path
    by_id.add("vtab-task", paths["vtab-task"])
    batch = torch.stack([serving.prepare(image, "vtab-task") for image in images])
    torch.testing.assert_close(by_id.logits(batch, ["vtab-task"] * 4), serving.logits(batch, ["vtab-task"] * 4))
    assert serving.predict([], []) == []


OTHER_FAMILIES = {
    # timm model, its options, image size, tasks
    "swin": ("swin_tiny_patch4_window7_224",
             dict(img_size=64, embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4), 64,
             {"deep": ("vpt-deep", {"num_prompts": 2}), "linear": ("linear", {})}),
    "conv": ("resnet18", dict(layers=(1, 1, 1, 1)), 224,
             {"border": ("vpt-shallow", {"num_prompts": 2}), "linear": ("linear", {})}),
}


@pytest.mark.parametrize("family", sorted(OTHER_FAMILIES))
def test_swin_and_convnet_tasks_run_as_sub_batches_on_the_shared_backbone(family, tmp_path):
    arch, options, size, tasks = OTHER_FAMILIES[family]
    torch.manual_seed(0)
    backbone = timm.create_model(arch, pretrained=False, num_classes=0, **options).eval()
    serving = vptune.MultiTask(backbone)
    paths = {name: make_task(backbone, name, tmp_path / f"{name}.safetensors", seed, tasks)
             for seed, name in enumerate(tasks)}
    for name, path in paths.items():
        assert not serving.add(name, path).shared
    names = [*tasks, *tasks]
    images = torch.randn(len(names), 3, size, size, generator=torch.Generator().manual_seed(3))
    logits = serving.logits(images, names)
    for i, name in enumerate(names):
        with torch.no_grad():
            expected = vptune.load(paths[name], backbone=backbone).eval()(images[i:i + 1])[0]
        torch.testing.assert_close(logits[i], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("whole", [False, True], ids=["row-by-row", "whole-block"])
def test_masked_key_tokens_are_as_if_absent(whole):
    # block_forward_rows with a key mask equals the block without the masked tokens, on both of its paths.
    from vptune.prompts.vit_fast import block_forward_rows, handles_rows

    block = tiny_vit(**VARIANTS["dinov2-registers"]).blocks[1].train(whole)
    assert handles_rows(block) != whole
    generator = torch.Generator().manual_seed(5)
    x, kv = torch.randn(2, 9, 64, generator=generator), torch.randn(2, 4, 64, generator=generator)
    mask = torch.ones(2, 13, dtype=torch.bool)
    mask[0, 2:4] = False  # two tokens of x (padded prompt slots) for sample 0
    mask[0, 11:] = False  # its last two key/value tokens
    mask[1, 10:] = False  # three key/value tokens of sample 1
    with torch.no_grad():
        masked = block_forward_rows(block, x, slice(None), kv, 1, mask)
        first = block_forward_rows(block, torch.cat([x[:1, :2], x[:1, 4:]], 1), slice(None), kv[:1, :2], 1)
        second = block_forward_rows(block, x[1:], slice(None), kv[1:, :1], 1)
    torch.testing.assert_close(torch.cat([masked[:1, :2], masked[:1, 4:]], 1), first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked[1:], second, atol=1e-5, rtol=1e-5)


class _FourierPrompt(VitPrompt):
    """Prompt tokens computed from learned values (the real part of their 2-D FFT), as VFPT computes them."""

    def tokens(self, count: int) -> torch.Tensor:
        return self.dropout(torch.fft.fft2(self.embeddings[:count]).real)

    def block_tokens(self, index: int, batch: int, backbone: torch.nn.Module) -> torch.Tensor:
        return self.tokens(index + 1)[index].unsqueeze(0).expand(batch, -1, -1)


class _FourierVpt(Method):
    """A prompt method this test registers: its own prompt module, no change to serve/ or prompts/."""

    name = "fourier-vpt-test"
    Options = NoOptions

    def attach(self, model, options) -> None:
        backbone = model.backbone
        model.prompt = _FourierPrompt(backbone, num_prompts=3, first_block=1, last_block=len(backbone.blocks) - 1)

    def shared_part(self, model):
        return SharedPart(model.prompt, model.classify)


def test_a_new_prompt_method_is_served_mixed_through_its_declared_part(monkeypatch):
    monkeypatch.setitem(METHODS._items, _FourierVpt.name, _FourierVpt())
    backbone = tiny_vit()
    serving = vptune.MultiTask(backbone)
    models = {}
    for seed, (name, method, options) in enumerate([("fourier", _FourierVpt.name, {}),
                                                     ("deep", "vpt-deep", {"num_prompts": 2}),
                                                     ("linear", "linear", {})]):
        model = vptune.create(backbone, method, 3, **options).eval()
        with torch.no_grad():
            for p in model.trainable_parameters().values():
                p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
        models[name] = model
        assert serving.add(name, model).shared
    names = ["fourier", "deep", "linear", "fourier", "deep"]
    images = torch.randn(len(names), 3, 32, 32, generator=torch.Generator().manual_seed(3))
    logits = serving.logits(images, names)
    for i, name in enumerate(names):
        with torch.no_grad():
            expected = models[name](images[i:i + 1])[0]
        torch.testing.assert_close(logits[i], expected, atol=1e-5, rtol=1e-5)
