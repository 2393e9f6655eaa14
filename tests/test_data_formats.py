"""Split formats, the image dataset and the transforms of vptune.data."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vptune.data import ImageDataset, build_transform, load_split
from vptune.errors import DataError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def write_png(path: Path, value: int = 128, size: tuple[int, int] = (12, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def make_vtab(root: Path, name: str = "cifar", lists: dict[str, list[int]] | None = None) -> Path:
    """A VTAB-1k task folder whose list `split` holds images labelled as given."""
    lists = lists or {"train800": [0, 1, 2, 1], "val200": [2, 0], "test": [0, 4]}
    task = root / name
    for split, labels in lists.items():
        lines = []
        for i, label in enumerate(labels):
            rel = f"images/{split}/{i:06d}.png"
            write_png(task / rel, value=10 * i)
            lines.append(f"{rel} {label}")
        (task / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return task


def make_fgvc(root: Path, n_per_class: int = 10, num_classes: int = 3, with_val: bool = True) -> Path:
    """An FGVC folder in the CUB layout: json paths relative to images/."""
    task = root / "cub"
    train = {}
    for c in range(num_classes):
        for i in range(n_per_class):
            rel = f"{c:03d}.class/img_{i}.png"
            write_png(task / "images" / rel)
            train[rel] = c
    (task / "train.json").write_text(json.dumps(train))
    (task / "test.json").write_text(json.dumps(dict(list(train.items())[:4])))
    (task / "train_10.json").write_text(json.dumps(dict(list(train.items())[::5])))
    (task / "class_map.json").write_text(json.dumps({"note": "not a split"}))
    if with_val:
        (task / "val.json").write_text(json.dumps(dict(list(train.items())[-3:])))
    return task


def make_folders(root: Path, splits: tuple[str, ...] = ("train", "val", "test"), n: int = 10) -> Path:
    task = root / "pets"
    for split in splits:
        for name in ("dog", "cat"):
            for i in range(n):
                write_png(task / split / name / f"{i}.jpg")
    return task


# ---------------------------------------------------------------- VTAB-1k


def test_vtab_reads_lists_and_counts_test_only_classes(tmp_path):
    task = make_vtab(tmp_path)
    split = load_split(tmp_path, "cifar", "train800")
    assert split.format == "vtab" and split.split == "train800"
    assert split.samples[0] == (task / "images/train800/000000.png", 0)
    assert all(p.is_absolute() and p.is_file() for p, _ in split.samples)
    assert [label for _, label in split.samples] == [0, 1, 2, 1]
    assert split.num_classes == 5  # label 4 appears only in test
    assert split.class_names == ["0", "1", "2", "3", "4"]


def test_vtab_ignores_other_txt_files(tmp_path):
    task = make_vtab(tmp_path)
    (task / "README.txt").write_text("Downloaded from somewhere.\n")
    assert len(load_split(tmp_path, "cifar", "test").samples) == 2


def test_vtab_class_names_from_classes_txt(tmp_path):
    task = make_vtab(tmp_path)
    (task / "classes.txt").write_text("a\nb\nc\nd\ne\nf\n")
    split = load_split(tmp_path, "cifar", "test")
    assert split.num_classes == 6 and split.class_names[-1] == "f"


@pytest.mark.parametrize(
    ("folder", "asked"),
    [
        ("cifar", "cifar100"),
        ("cifar100", "CIFAR"),
        ("oxford_iiit_pet", "pets"),
        ("oxford_pet", "Oxford-IIIT-Pet"),
        ("dsprites_loc", "dsprites-location"),
        ("dsprites-orientation", "dsprites_ori"),
        ("clevr_dist", "clevr-distance"),
        ("patch_camelyon", "pcam"),
        ("smallnorb_azi", "SmallNORB-Azimuth"),
        ("Retinopathy", "diabetic_retinopathy"),
    ],
)
def test_task_aliases_resolve(tmp_path, folder, asked):
    task = make_vtab(tmp_path, folder)
    assert load_split(tmp_path, asked, "val200").samples[0][0].parent.parent.parent == task


def test_ambiguous_alias_is_an_error(tmp_path):
    make_vtab(tmp_path, "cifar")
    make_vtab(tmp_path, "cifar100")
    with pytest.raises(DataError, match="several folders"):
        load_split(tmp_path, "cifar_100", "test")


# ---------------------------------------------------------------- FGVC


def test_fgvc_with_val_json_and_images_prefix(tmp_path):
    task = make_fgvc(tmp_path)
    train = load_split(tmp_path, "cub", "train")
    assert train.format == "fgvc" and len(train.samples) == 30 and train.num_classes == 3
    assert all(p.is_file() and p.parent.parent == task / "images" for p, _ in train.samples)
    assert len(load_split(tmp_path, "cub", "val").samples) == 3
    assert len(load_split(tmp_path, "cub", "train_10").samples) == 6


def test_fgvc_paths_relative_to_task_folder(tmp_path):
    task = tmp_path / "cars"
    write_png(task / "car_0.png")
    (task / "train.json").write_text(json.dumps({"car_0.png": 0}))
    assert load_split(tmp_path, "cars", "train").samples == [(task / "car_0.png", 0)]


def test_fgvc_without_val_carves_seeded_disjoint_val(tmp_path):
    make_fgvc(tmp_path, with_val=False)
    train = load_split(tmp_path, "cub", "train", seed=3)
    val = load_split(tmp_path, "cub", "val", seed=3)
    train_paths, val_paths = {p for p, _ in train.samples}, {p for p, _ in val.samples}
    assert not train_paths & val_paths and len(train_paths | val_paths) == 30
    assert [label for _, label in val.samples] == [0, 1, 2]  # 10% of each class
    assert load_split(tmp_path, "cub", "val", seed=3).samples == val.samples
    other = {load_split(tmp_path, "cub", "val", seed=s).samples[0][0] for s in range(10)}
    assert len(other) > 1  # the seed matters
    subset = load_split(tmp_path, "cub", "train_10", seed=3)
    assert not {p for p, _ in subset.samples} & val_paths


def test_fgvc_carve_ignores_json_key_order(tmp_path):
    task = make_fgvc(tmp_path, with_val=False)
    before = load_split(tmp_path, "cub", "val").samples
    items = list(json.loads((task / "train.json").read_text()).items())
    (task / "train.json").write_text(json.dumps(dict(reversed(items))))
    assert load_split(tmp_path, "cub", "val").samples == before


# ---------------------------------------------------------------- class folders


def test_folders_layout(tmp_path):
    task = make_folders(tmp_path)
    split = load_split(tmp_path, "pets", "test")
    assert split.format == "folders" and split.class_names == ["cat", "dog"]
    assert len(split.samples) == 20 and split.samples[0] == (task / "test/cat/0.jpg", 0)


def test_folders_without_val_carves_from_train(tmp_path):
    make_folders(tmp_path, splits=("train", "test"))
    train = load_split(tmp_path, "pets", "train")
    val = load_split(tmp_path, "pets", "val")
    assert len(train.samples) == 18 and len(val.samples) == 2
    assert not {p for p, _ in train.samples} & {p for p, _ in val.samples}
    assert all(p.parent.parent.name == "train" for p, _ in val.samples)


# ---------------------------------------------------------------- bad inputs


def test_missing_task_lists_root(tmp_path):
    make_vtab(tmp_path, "dtd")
    with pytest.raises(DataError, match=r"no folder for task 'eurosat'.*dtd/"):
        load_split(tmp_path, "eurosat", "test")


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        load_split(tmp_path / "nowhere", "dtd", "test")


def test_missing_split_lists_available(tmp_path):
    make_vtab(tmp_path)
    with pytest.raises(DataError, match=r"split 'train' not found.*available splits: test, train800, val200"):
        load_split(tmp_path, "cifar", "train")


def test_missing_fgvc_split(tmp_path):
    make_fgvc(tmp_path)
    with pytest.raises(DataError, match="available splits: test, train, train_10, val"):
        load_split(tmp_path, "cub", "train_50")


def test_malformed_line_names_file_and_line(tmp_path):
    task = make_vtab(tmp_path)
    (task / "val200.txt").write_text("images/val200/000000.png 0\nimages/val200/000001.png cat\n")
    with pytest.raises(DataError, match=r"val200.txt:2: expected"):
        load_split(tmp_path, "cifar", "train800")


def test_label_beyond_class_names(tmp_path):
    task = make_vtab(tmp_path)
    (task / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(DataError, match=r"test.txt:2: label 4 is outside \[0, 3\)"):
        load_split(tmp_path, "cifar", "train800")


def test_negative_label(tmp_path):
    make_vtab(tmp_path, lists={"train800": [0, -1], "test": [0, 1]})
    with pytest.raises(DataError, match=r"train800.txt:2: label -1 is negative"):
        load_split(tmp_path, "cifar", "test")


def test_fgvc_non_integer_label(tmp_path):
    task = make_fgvc(tmp_path)
    (task / "val.json").write_text(json.dumps({"000.class/img_0.png": "zero"}))
    with pytest.raises(DataError, match=r"val.json\['000.class/img_0.png'\]: class id 'zero' is not an integer"):
        load_split(tmp_path, "cub", "train")


def test_fgvc_missing_images(tmp_path):
    task = tmp_path / "dogs"
    task.mkdir()
    (task / "train.json").write_text(json.dumps({"n02085620/x.jpg": 0}))
    with pytest.raises(DataError, match=r"'n02085620/x.jpg' of split 'train' not found under"):
        load_split(tmp_path, "dogs", "train")


def test_empty_split(tmp_path):
    task = make_vtab(tmp_path)
    (task / "val200.txt").write_text("\n")
    with pytest.raises(DataError, match="split 'val200' of .* holds no images"):
        load_split(tmp_path, "cifar", "val200")


def test_unknown_layout(tmp_path):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.md").write_text("x")
    with pytest.raises(DataError, match="no known layout.*notes.md"):
        load_split(tmp_path, "odd", "train")


def test_folders_class_missing_from_train(tmp_path):
    task = make_folders(tmp_path)
    write_png(task / "test" / "hamster" / "0.jpg")
    with pytest.raises(DataError, match="hamster has no counterpart in train/"):
        load_split(tmp_path, "pets", "test")


def test_bad_val_fraction(tmp_path):
    make_folders(tmp_path)
    with pytest.raises(DataError, match="val_fraction=1.5"):
        load_split(tmp_path, "pets", "val", val_fraction=1.5)


# ---------------------------------------------------------------- dataset


def test_dataset_returns_rgb_tensors_and_labels(tmp_path):
    task = make_vtab(tmp_path)
    Image.new("L", (5, 7), 200).save(task / "images/test/000000.png")  # grey becomes RGB
    dataset = ImageDataset(load_split(tmp_path, "cifar", "test"), build_transform("vtab", 16, MEAN, STD, train=False))
    image, label = dataset[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 0
    assert torch.allclose(image, torch.full_like(image, (200 / 255 - 0.5) / 0.25), atol=1e-5)
    assert len(dataset) == 2 and dataset.num_classes == 5


def corrupt_dataset(tmp_path: Path) -> tuple[Path, Path]:
    task = make_vtab(tmp_path)
    garbage = task / "images/train800/000001.png"
    garbage.write_bytes(b"not an image at all")
    truncated = task / "images/train800/000002.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:400])
    return garbage, truncated


def test_corrupt_image_raises_with_path(tmp_path):
    garbage, truncated = corrupt_dataset(tmp_path)
    dataset = ImageDataset(load_split(tmp_path, "cifar", "train800"), build_transform("vtab", 8, MEAN, STD, False))
    dataset[0]
    for index, path in ((1, garbage), (2, truncated)):
        with pytest.raises(DataError, match=f"image {path} cannot be decoded.*skip_bad_images=True"):
            dataset[index]


def test_missing_image_raises_with_path(tmp_path):
    task = make_vtab(tmp_path)
    (task / "images/test/000001.png").unlink()
    dataset = ImageDataset(load_split(tmp_path, "cifar", "test"), build_transform("vtab", 8, MEAN, STD, False))
    with pytest.raises(DataError, match="000001.png does not exist"):
        dataset[1]


def test_skip_bad_images_drops_and_counts(tmp_path):
    garbage, truncated = corrupt_dataset(tmp_path)
    split = load_split(tmp_path, "cifar", "train800")
    dataset = ImageDataset(split, build_transform("vtab", 8, MEAN, STD, False), skip_bad_images=True)
    assert dataset.skipped == [garbage, truncated]
    assert len(dataset) == 2 and dataset.labels == [0, 1]
    assert [dataset[i][0].shape for i in range(2)] == [(3, 8, 8)] * 2


def test_cache_decodes_each_image_once(tmp_path, monkeypatch):
    make_vtab(tmp_path)
    calls = []
    import vptune.data.dataset as dataset_module

    original = dataset_module.load_rgb
    monkeypatch.setattr(dataset_module, "load_rgb", lambda p: calls.append(p) or original(p))
    split = load_split(tmp_path, "cifar", "train800")
    dataset = ImageDataset(split, build_transform("fgvc", 8, MEAN, STD, train=True), cache_images=True)
    for _ in range(3):
        batch = [dataset[i][0] for i in range(len(dataset))]
    assert len(calls) == 4 and batch[0].shape == (3, 8, 8)
    dataset.preload()
    assert len(calls) == 4


def test_plain_callable_transform_is_accepted(tmp_path):
    make_vtab(tmp_path)
    dataset = ImageDataset(load_split(tmp_path, "cifar", "test"), lambda im: torch.tensor(im.size), cache_images=True)
    assert dataset[0][0].tolist() == [12, 8]


# ---------------------------------------------------------------- transforms


def test_vtab_transform_is_a_square_resize_without_augmentation():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8))
    transform = build_transform("vtab", 24, MEAN, STD, train=True)
    assert transform.prepare(image).shape == (3, 24, 24) and transform.prepare(image).dtype == torch.uint8
    assert torch.equal(transform(image), transform(image))


@pytest.mark.parametrize("protocol", ["fgvc", "folders"])
def test_fgvc_transform_shapes(protocol):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    train = build_transform(protocol, 224, MEAN, STD, train=True)
    test = build_transform(protocol, 224, MEAN, STD, train=False)
    assert train.prepare(image).shape == (3, 256, 341)  # shorter side 224 * 256 / 224
    assert train(image).shape == test(image).shape == (3, 224, 224)
    assert test.prepare(image).shape == (3, 224, 224)  # centre crop is cacheable
    assert torch.equal(test(image), test(image))
    torch.manual_seed(0)
    assert not all(torch.equal(train(image), train(image)) for _ in range(3))


def test_fgvc_resize_matches_authors_table():
    image = Image.new("RGB", (600, 500))
    sizes = {s: build_transform("fgvc", s, MEAN, STD, train=True).prepare(image).shape[1] for s in (224, 384, 448)}
    assert sizes == {224: 256, 384: 438, 448: 512}


def test_transforms_pickle_for_spawned_workers():
    image = Image.new("RGB", (40, 30), (10, 200, 30))
    for protocol, train in (("vtab", False), ("fgvc", True), ("fgvc", False)):
        transform = build_transform(protocol, 16, MEAN, STD, train)
        copy = pickle.loads(pickle.dumps(transform))
        assert torch.equal(copy.prepare(image), transform.prepare(image))


def test_transform_errors():
    with pytest.raises(DataError, match="unknown protocol 'imagenet'; use one of vtab, fgvc, folders"):
        build_transform("imagenet", 224, MEAN, STD, train=False)
    with pytest.raises(DataError, match="img_size=0"):
        build_transform("vtab", 0, MEAN, STD, train=False)
    with pytest.raises(DataError, match="3 values"):
        build_transform("vtab", 8, (0.5,), STD, train=False)
