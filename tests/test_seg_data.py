"""Segmentation data: the four layouts, joint image/mask transforms, offline scene tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vptune.data import prepare_task
from vptune.segmentation import scenes as seg_tasks
from vptune.segmentation.dataset import SegDataset, seg_collate
from vptune.segmentation.formats import load_pair, load_seg_split
from vptune.segmentation.scenes import Layer, compose
from vptune.segmentation.transforms import SegTransform, random_crop
from vptune.data.synthetic_tasks import BACKGROUND, CLEVR_COLOURS
from vptune.errors import DataError

from conftest import fashion_available, tree_digest

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def save_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def labels(height: int, width: int, values: list[int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(np.array(values, np.uint8), (height, width))


# ---------------------------------------------------------------- layouts


def test_ade20k_reduces_the_zero_label(tmp_path):
    base = tmp_path / "ade" / "ADEChallengeData2016"
    raw = np.array([[0, 1, 150, 255], [2, 2, 2, 2]], np.uint8)
    for split in ("training", "validation"):
        save_image(base / "images" / split / "ADE_x_1.jpg", rgb(2, 4))
        save_image(base / "annotations" / split / "ADE_x_1.png", raw)
    train = load_seg_split(tmp_path, "ade", "train")
    assert (train.format, train.split, train.num_classes) == ("ade20k", "training", 150)
    assert train.class_names[:5] == ["wall", "building", "sky", "floor", "tree"]
    assert train.class_names[-1] == "flag" and train.class_names[7] == "bed"
    assert load_seg_split(tmp_path, "ade", "validation").samples[0][0].name == "ADE_x_1.jpg"
    _, mask = load_pair(*train.samples[0], train)
    assert mask.tolist() == [[255, 0, 149, 255], [1, 1, 1, 1]]


def test_ade20k_label_above_150(tmp_path):
    base = tmp_path / "ade"
    save_image(base / "images" / "training" / "a.jpg", rgb(2, 2))
    mask = save_image(base / "annotations" / "training" / "a.png", np.array([[0, 151], [3, 3]], np.uint8))
    split = load_seg_split(tmp_path, "ade", "training")
    with pytest.raises(DataError, match=rf"mask {mask}: label 151 is outside the classes 1\.\.150"):
        load_pair(*split.samples[0], split)


def test_voc_reads_palette_indices(tmp_path):
    base = tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    for name in ("2007_000032", "2007_000033"):
        save_image(base / "JPEGImages" / f"{name}.jpg", rgb(3, 3))
        mask = Image.frombytes("P", (3, 3), np.array([[0, 15, 255], [20, 1, 0], [0, 0, 0]], np.uint8).tobytes())
        mask.putpalette([0, 0, 0, 128, 0, 0] * 128)
        (base / "SegmentationClass").mkdir(exist_ok=True)
        mask.save(base / "SegmentationClass" / f"{name}.png")
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2007_000032\n")
    (lists / "val.txt").write_text("2007_000033\n")
    split = load_seg_split(tmp_path, "voc", "val")
    assert (split.format, split.num_classes, split.class_names[15]) == ("voc", 21, "person")
    assert [p.name for p, _ in split.samples] == ["2007_000033.jpg"]
    assert load_pair(*split.samples[0], split)[1].tolist() == [[0, 15, 255], [20, 1, 0], [0, 0, 0]]
    with pytest.raises(DataError, match="split 'test' not found in .*available splits: train, val"):
        load_seg_split(tmp_path, "voc", "test")


def test_cityscapes_train_ids(tmp_path):
    base = tmp_path / "cityscapes"
    stem = "aachen_000000_000019"
    save_image(base / "leftImg8bit" / "train" / "aachen" / f"{stem}_leftImg8bit.png", rgb(4, 8))
    save_image(base / "gtFine" / "train" / "aachen" / f"{stem}_gtFine_labelTrainIds.png", labels(4, 8, [0, 18, 255]))
    save_image(base / "gtFine" / "train" / "aachen" / f"{stem}_gtFine_labelIds.png", labels(4, 8, [33]))
    split = load_seg_split(tmp_path, "cityscapes", "train")
    assert (split.format, split.num_classes, split.class_names[-1]) == ("cityscapes", 19, "bicycle")
    assert split.samples[0][1].name == f"{stem}_gtFine_labelTrainIds.png"
    assert set(np.unique(load_pair(*split.samples[0], split)[1])) <= {0, 18, 255}


def folder_task(root: Path, classes: list[str], masks: dict[str, np.ndarray], split: str = "train") -> Path:
    task = root / "pairs"
    for name, mask in masks.items():
        save_image(task / "images" / split / f"{name}.jpg", rgb(*mask.shape))
        save_image(task / "masks" / split / f"{name}.png", mask)
    (task / "classes.txt").write_text("\n".join(classes) + "\n")
    return task


def test_folder_pairs(tmp_path):
    folder_task(tmp_path, ["sky", "road", "car"], {"b": labels(5, 6, [0, 2, 255]), "a": labels(5, 6, [1])})
    split = load_seg_split(tmp_path, "pairs", "train")
    assert (split.format, split.class_names) == ("seg-folders", ["sky", "road", "car"])
    assert [(i.name, m.name) for i, m in split.samples] == [("a.jpg", "a.png"), ("b.jpg", "b.png")]
    image, mask = load_pair(*split.samples[1], split)
    assert image.size == (6, 5) and np.array_equal(mask, labels(5, 6, [0, 2, 255]))


def test_folder_pairs_errors(tmp_path):
    task = folder_task(tmp_path, ["sky", "road"], {"a": labels(5, 6, [0, 2])})
    split = load_seg_split(tmp_path, "pairs", "train")
    with pytest.raises(DataError, match=rf"mask {task}/masks/train/a.png: label 2 is outside the classes 0\.\.1 "):
        load_pair(*split.samples[0], split)
    save_image(task / "masks" / "train" / "a.png", labels(4, 6, [0]))
    with pytest.raises(DataError, match=r"mask .*a.png is 6x4 but image .*a.jpg is 6x5; masks must"):
        load_pair(*split.samples[0], split)
    save_image(task / "masks" / "train" / "a.png", rgb(5, 6))
    with pytest.raises(DataError, match=r"a.png is a RGB image; save class ids as a single-channel"):
        load_pair(*split.samples[0], split)
    save_image(task / "images" / "train" / "b.png", rgb(5, 6))
    missing = rf"image {task}/images/train/b.png has no mask \(expected .*masks/train/b.png\)"
    with pytest.raises(DataError, match=missing):
        load_seg_split(tmp_path, "pairs", "train")
    (task / "classes.txt").unlink()
    with pytest.raises(DataError, match="classes.txt is missing; list the class names"):
        load_seg_split(tmp_path, "pairs", "train")


def test_unknown_layout(tmp_path):
    (tmp_path / "task" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="is in no segmentation layout"):
        load_seg_split(tmp_path, "task", "train")


# ---------------------------------------------------------------- transforms


def rectangle_scene(k: int = 3) -> tuple[Image.Image, np.ndarray]:
    """A white rectangle of class k on black class 0, 60 x 90 pixels."""
    image, mask = np.zeros((60, 90, 3), np.uint8), np.zeros((60, 90), np.uint8)
    image[15:45, 30:70], mask[15:45, 30:70] = 255, k
    return Image.fromarray(image), mask


def test_train_transform_keeps_the_rectangle_aligned():
    transform = SegTransform(32, MEAN, STD, train=True, base_scale=(96, 48))
    image, mask = rectangle_scene()
    seen_flip = seen_rect = 0
    for seed in range(30):
        out, target = transform(image, mask, torch.Generator().manual_seed(seed))
        assert out.shape == (3, 32, 32) and target.shape == (32, 32) and target.dtype == torch.long
        assert set(target.unique().tolist()) <= {0, 3, 255}
        grey = (out * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]).mean(0)
        # Away from edges (where bilinear blends), bright pixels are exactly the class-3 pixels.
        padded = F.pad(target[None, None].float(), (1, 1, 1, 1), mode="replicate")
        interior = (F.max_pool2d(padded, 3, 1) == -F.max_pool2d(-padded, 3, 1))[0, 0]
        keep = interior & (target != 255)
        assert torch.equal((grey > 0.3)[keep], (target == 3)[keep]), seed
        seen_rect += bool((target == 3).any())
        # The rectangle sits right of centre; a flip shows it on the left.
        cols = torch.nonzero(target == 3)[:, 1]
        seen_flip += bool(len(cols)) and cols.float().mean() < 12
    assert seen_rect > 10 and seen_flip > 0


def test_train_transform_is_seeded():
    transform = SegTransform(32, MEAN, STD, train=True)
    image, mask = rectangle_scene()
    first = transform(image, mask, torch.Generator().manual_seed(5))
    again = transform(image, mask, torch.Generator().manual_seed(5))
    other = transform(image, mask, torch.Generator().manual_seed(6))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_masks_keep_their_label_set():
    image = Image.fromarray(rgb(50, 70))
    mask = labels(50, 70, [1, 4, 9, 255])
    for train in (True, False):
        transform = SegTransform(24, MEAN, STD, train=train)
        for seed in range(10):
            _, target = transform(image, mask, torch.Generator().manual_seed(seed))
            assert set(target.unique().tolist()) <= {1, 4, 9, 255}


def test_eval_resizes_the_image_and_keeps_the_mask():
    """mmseg keep_ratio: factor min(long / max(h, w), short / min(h, w)), sizes rounded half up."""
    transform = SegTransform(32, MEAN, STD, train=False)
    mask = labels(50, 100, [0, 1])
    image, target = transform(Image.fromarray(rgb(50, 100)), mask)
    assert image.shape == (3, 32, 64)  # min(128 / 100, 32 / 50) = 0.64
    assert torch.equal(target, torch.from_numpy(mask).long())
    image, _ = SegTransform(512, MEAN, STD, train=False)(Image.fromarray(rgb(256, 2000)), labels(256, 2000, [0]))
    assert image.shape == (3, 262, 2048)  # min(2048 / 2000, 512 / 256) = 1.024


def test_crop_is_padded_with_ignore():
    transform = SegTransform(32, MEAN, STD, train=True, base_scale=(20, 10), ratio_range=(1.0, 1.0))
    image, target = transform(Image.fromarray(rgb(10, 20)), labels(10, 20, [2]), torch.Generator().manual_seed(0))
    assert image.shape == (3, 32, 32)
    assert (target[:10, :20] == 2).all() and (target[10:] == 255).all() and (target[:, 20:] == 255).all()
    assert (image[:, 10:] == 0).all() and (image[:, :, 20:] == 0).all()


def cat_share(window: torch.Tensor) -> float:
    counts = torch.bincount(window.flatten(), minlength=256)[:255]
    return float(counts.max() / counts.sum()) if (counts > 0).sum() > 1 else 1.0


def test_cat_max_ratio_retries_crops():
    """A 20-row class-1 band over class 0: about a third of 32 px crops keep both classes under 75%."""
    mask = torch.zeros(64, 64, dtype=torch.uint8)
    mask[:20] = 1
    mask[60:] = 255  # ignored pixels count for neither class
    pixels = torch.zeros(3, 64, 64, dtype=torch.uint8)

    def violations(ratio: float) -> int:
        crops = [random_crop(pixels, mask, 32, ratio, 255, torch.Generator().manual_seed(s))[1] for s in range(200)]
        assert all(c.shape == (32, 32) for c in crops)
        return sum(cat_share(c.long()) >= 0.75 for c in crops)

    assert violations(1.0) > 100  # without the constraint most crops are dominated by one class
    assert violations(0.75) <= 6  # ten tries leave ~0.66**10 of them


def test_dataset_and_collate(tmp_path):
    folder_task(tmp_path, ["a", "b"], {f"{i}": labels(20 + i, 30, [0, 1], seed=i) for i in range(3)})
    split = load_seg_split(tmp_path, "pairs", "train")
    train = SegDataset(split, SegTransform(16, MEAN, STD, train=True), cache=True)
    images, masks = seg_collate([train[i] for i in range(3)])
    assert images.shape == (3, 3, 16, 16) and masks.shape == (3, 16, 16)
    evaluation = SegDataset(split, SegTransform(16, MEAN, STD, train=False))
    images, masks = seg_collate([evaluation[i] for i in range(3)])
    assert [m.shape for m in masks] == [(20, 30), (21, 30), (22, 30)]


# ---------------------------------------------------------------- offline tasks


def test_compose_top_most_item_wins():
    square = np.ones((4, 4), bool)
    ring = np.ones((3, 3), bool)
    ring[1, 1] = False  # a see-through centre shows what lies below
    layers = [
        Layer(1, 1, square, np.full((4, 4, 3), 10, np.uint8), 1),
        Layer(3, 3, ring, np.full((3, 3, 3), 20, np.uint8), 2),
    ]
    image, mask = compose(7, (5, 5, 5), layers)
    expected = np.zeros((7, 7), np.uint8)
    expected[1:5, 1:5] = 1
    expected[3:6, 3:6] = 2
    expected[4, 4] = 1
    assert np.array_equal(mask, expected)
    assert np.array_equal(image[..., 0], np.choose(expected, [5, 10, 20]))


@pytest.fixture
def small_splits(monkeypatch):
    monkeypatch.setattr(seg_tasks, "SEG_SPLIT_SIZES", {"train": 6, "val": 3, "test": 500})


TASKS = [
    pytest.param("fashion-scenes", marks=pytest.mark.skipif(not fashion_available(), reason="no Fashion-MNIST")),
    "shapes-seg",
]


@pytest.mark.parametrize("name", TASKS)
def test_scene_tasks_are_seeded_folder_pairs(tmp_path, small_splits, name):
    first = prepare_task(name, tmp_path / "a", seed=3, n_test=4)
    again = prepare_task(name, tmp_path / "b", seed=3, n_test=4)
    other = prepare_task(name, tmp_path / "c", seed=4, n_test=4)
    assert tree_digest(first) == tree_digest(again) != tree_digest(other)
    sizes = {s: len(load_seg_split(tmp_path / "a", name, s).samples) for s in ("train", "val", "test")}
    assert sizes == {"train": 6, "val": 3, "test": 4}
    names = (first / "classes.txt").read_text().split("\n")
    assert names[0] == "background"
    assert names[1:-1] == (["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                            "Bag", "Ankle boot"] if name == "fashion-scenes" else ["circle", "square", "triangle"])


@pytest.mark.parametrize("name", TASKS)
def test_scene_masks_match_the_pixels(tmp_path, small_splits, name):
    prepare_task(name, tmp_path, n_test=4)
    split = load_seg_split(tmp_path, name, "train")
    seen = set()
    for image_path, mask_path in split.samples:
        image, mask = load_pair(image_path, mask_path, split)
        pixels = np.asarray(image)
        background = pixels[mask == 0]
        assert len(background) and (background == background[0]).all()  # one flat background colour
        assert ((mask > 0) & (pixels == background[0]).all(-1)).mean() < 0.02
        seen |= set(np.unique(mask).tolist())
        if name == "shapes-seg":
            assert (background[0] == BACKGROUND).all()
            assert {tuple(p) for p in pixels[mask > 0]} <= set(CLEVR_COLOURS)
    assert len(seen) > 3
