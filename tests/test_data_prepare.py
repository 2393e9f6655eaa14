"""Offline tasks written in VTAB-1k layout by vptune.data.prepare."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vptune.data import available_tasks, load_split, prepare_task
from vptune.data.real_tasks import FASHION_MNIST_ENV
from vptune.data.synthetic_tasks import BACKGROUND
from vptune.errors import DataError

from conftest import fashion_available, tree_digest

# name -> (number of classes, image size, default test size)
EXPECTED = {
    "fashion-mnist": (10, (28, 28), 1000),
    "digits": (10, (8, 8), 797),
    "dsprites-location": (16, (64, 64), 1000),
    "dsprites-orientation": (16, (64, 64), 1000),
    "shapes-count": (8, (128, 128), 1000),
    "shapes-distance": (6, (128, 128), 1000),
}


def has_sklearn() -> bool:
    return importlib.util.find_spec("sklearn") is not None


def task_params() -> list:
    skips = {
        "fashion-mnist": pytest.mark.skipif(not fashion_available(), reason="Fashion-MNIST Debian files are absent"),
        "digits": pytest.mark.skipif(not has_sklearn(), reason="scikit-learn is not installed"),
    }
    return [pytest.param(n, marks=skips[n]) if n in skips else n for n in sorted(EXPECTED)]


def can_prepare(name: str) -> bool:
    return {"fashion-mnist": fashion_available(), "digits": has_sklearn()}.get(name, True)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Each task, generated once with the default seed and test size."""
    root = tmp_path_factory.mktemp("offline")
    for name in filter(can_prepare, EXPECTED):
        prepare_task(name, root)
    return root


def labels_of(root: Path, name: str, split: str) -> list[int]:
    return [label for _, label in load_split(root, name, split).samples]


def test_available_tasks():
    assert available_tasks() == sorted([*EXPECTED, "fashion-scenes", "shapes-seg"])


@pytest.mark.parametrize("name", task_params())
def test_counts_labels_and_images(prepared, name):
    num_classes, size, n_test = EXPECTED[name]
    splits = {s: load_split(prepared, name, s) for s in ("train800", "val200", "train800val200", "test")}
    assert {s: len(t.samples) for s, t in splits.items()} == {
        "train800": 800, "val200": 200, "train800val200": 1000, "test": n_test,
    }
    assert splits["train800val200"].samples == splits["train800"].samples + splits["val200"].samples
    assert all(t.num_classes == num_classes == len(t.class_names) for t in splits.values())
    assert all(0 <= label < num_classes for t in splits.values() for _, label in t.samples)
    # Every class is in train800, and none is starved.
    counts = Counter(labels_of(prepared, name, "train800"))
    assert len(counts) == num_classes and min(counts.values()) >= 800 / num_classes / 2
    path = splits["test"].samples[-1][0]
    assert path.is_file() and Image.open(path).size == size


@pytest.mark.parametrize("name", task_params())
def test_deterministic_for_a_seed(tmp_path, name):
    first = prepare_task(name, tmp_path / "a", seed=7, n_test=50)
    again = prepare_task(name, tmp_path / "b", seed=7, n_test=50)
    other = prepare_task(name, tmp_path / "c", seed=8, n_test=50)
    assert len(load_split(tmp_path / "a", name, "test").samples) == 50
    assert tree_digest(first) == tree_digest(again) != tree_digest(other)


def test_fashion_mnist_class_names(prepared):
    if not fashion_available():
        pytest.skip("Fashion-MNIST Debian files are absent")
    names = load_split(prepared, "fashion-mnist", "test").class_names
    assert names[0] == "T-shirt/top" and names[-1] == "Ankle boot"


def test_shapes_count_label_is_the_number_of_objects(prepared):
    ndimage = pytest.importorskip("scipy.ndimage")
    for path, label in load_split(prepared, "shapes-count", "val200").samples:
        foreground = (np.asarray(Image.open(path)) != BACKGROUND).any(axis=-1)
        # 8-connectivity: thin polygon tips touch only diagonally; shapes are 3 px apart.
        assert ndimage.label(foreground, structure=np.ones((3, 3)))[1] == label + 3, path


def lowest_object_row(path: Path) -> int:
    foreground = (np.asarray(Image.open(path)) != BACKGROUND).any(axis=-1)
    return int(np.flatnonzero(foreground.any(axis=1)).max())


def test_shapes_distance_label_is_readable_from_the_image(prepared):
    """The closest object stands lowest: its bottom row nearly decides the depth bin."""
    train = load_split(prepared, "shapes-distance", "train800").samples
    test = load_split(prepared, "shapes-distance", "test").samples
    rows = {label: [] for label in range(6)}
    for path, label in train:
        rows[label].append(lowest_object_row(path))
    medians = np.array([np.median(rows[label]) for label in range(6)])
    assert np.all(np.diff(medians) < 0)  # farther bins stand higher
    predict = lambda row: int(np.argmin(np.abs(medians - row)))  # noqa: E731
    accuracy = np.mean([predict(lowest_object_row(path)) == label for path, label in test])
    assert accuracy > 0.9


def test_dsprites_location_follows_x(prepared):
    centre_x = {}
    for path, label in load_split(prepared, "dsprites-location", "train800").samples:
        columns = np.flatnonzero(np.asarray(Image.open(path)).any(axis=0))
        centre_x.setdefault(label, []).append(columns.mean())
    assert np.all(np.diff([np.mean(centre_x[label]) for label in range(16)]) > 0)


def test_unknown_task_lists_available(tmp_path):
    with pytest.raises(DataError, match="unknown offline task 'cifar'; available: digits, dsprites-location"):
        prepare_task("cifar", tmp_path)


def test_existing_folder_needs_overwrite(tmp_path):
    prepare_task("dsprites-location", tmp_path, n_test=20)
    with pytest.raises(DataError, match="already exists.*overwrite=True"):
        prepare_task("dsprites-location", tmp_path, n_test=10)
    prepare_task("dsprites-location", tmp_path, n_test=10, overwrite=True)
    assert len(load_split(tmp_path, "dsprites-location", "test").samples) == 10
    assert len(list((tmp_path / "dsprites-location/images/test").iterdir())) == 10


def test_bad_n_test(tmp_path):
    pytest.importorskip("sklearn")
    with pytest.raises(DataError, match="n_test=798 is out of range; this task has 1..797"):
        prepare_task("digits", tmp_path, n_test=798)
    with pytest.raises(DataError, match="n_test=0"):
        prepare_task("shapes-count", tmp_path, n_test=0)


def test_fashion_mnist_missing_files_explain_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(DataError, match=r"apt-get install dataset-fashion-mnist.*dpkg -x.*VPTUNE_FASHION_MNIST_DIR"):
        prepare_task("fashion-mnist", tmp_path / "out")


def test_a_write_that_fails_midway_leaves_the_old_task_and_no_half_written_one(tmp_path, monkeypatch):
    prepare_task("dsprites-location", tmp_path, n_test=20)
    (tmp_path / "dsprites-location" / "notes.txt").write_text("the user's own file\n")
    before = tree_digest(tmp_path)
    saved = []
    original = Image.Image.save

    def disk_full_after_ten(image, fp, *args, **kwargs):
        if len(saved) == 10:
            raise OSError(28, "No space left on device")
        saved.append(fp)
        return original(image, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", disk_full_after_ten)
    with pytest.raises(DataError, match="cannot write .*dsprites-location: No space left on device"):
        prepare_task("dsprites-location", tmp_path, n_test=10, overwrite=True)
    with pytest.raises(DataError, match="No space left on device"):
        saved.clear()
        prepare_task("dsprites-orientation", tmp_path / "new-root", n_test=10)
    assert tree_digest(tmp_path) == before  # the old task whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsprites-location"]  # no staging folder, no new root
    monkeypatch.undo()
    prepare_task("dsprites-location", tmp_path, n_test=10, overwrite=True)  # replaces the task's own files only
    assert (tmp_path / "dsprites-location" / "notes.txt").read_text() == "the user's own file\n"
    assert len(list((tmp_path / "dsprites-location/images/test").iterdir())) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsprites-location"]
