"""Installing VTAB-1k and FGVC tasks from archives: layouts, the check against the table, nothing half written."""

from __future__ import annotations

from pathlib import Path

import pytest

from vptune.cli.main import main
from vptune.data.benchmark_tasks import FGVC_TASKS, VTAB_GROUPS, VTAB_TASKS, find_task
from vptune.data.formats import canonical_task_name, load_split
from vptune.data.importer import TaskCheckError, import_tasks
from vptune.errors import DataError

from benchmark_archives import (fgvc_image_files, fgvc_json_files, fgvc_splits, noah_vtab_files, png, write_tar,
                                write_zip)
from conftest import assert_one_line_error


@pytest.fixture(scope="module")
def kitti_files() -> dict[str, bytes]:
    return noah_vtab_files("kitti")


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def test_the_table_holds_the_paper_tasks():
    groups = [task.group for task in VTAB_TASKS]
    assert len(VTAB_TASKS) == 19 and [groups.count(g) for g in VTAB_GROUPS] == [7, 4, 8]
    # Each name is the first of formats' alias group, so every loader accepts the same folders.
    assert all(canonical_task_name(task.name) == task.name for task in VTAB_TASKS)
    assert all(task.split_sizes["train800val200"] == 1000 for task in VTAB_TASKS)
    assert [t.name for t in FGVC_TASKS] == ["cub", "nabirds", "flowers", "dogs", "cars"]
    assert find_task("vtab-1k", "cifar100").name == "cifar" and find_task("fgvc", "CUB_200_2011").name == "cub"
    with pytest.raises(DataError, match="did you mean kitti"):
        find_task("vtab-1k", "kitty")


def test_noah_zip_installs_a_checked_task(tmp_path, kitti_files):
    archive = write_zip(tmp_path / "vtab-1k.zip", kitti_files)
    assert import_tasks([archive], tmp_path / "data") == [tmp_path / "data" / "kitti"]
    test = load_split(tmp_path / "data", "kitti", "test")
    assert len(test.samples) == 711 and test.num_classes == 4
    assert _leftovers(tmp_path / "data") == ["kitti"]


def test_tar_and_folder_sources_and_other_folder_names(tmp_path):
    files = {name.replace("vtab-1k/", "copy/"): data
             for name, data in noah_vtab_files("kitti", folder="kitti_distance").items()}
    archive = write_tar(tmp_path / "vtab.tgz", files)
    assert import_tasks([archive], tmp_path / "a", tasks=["kitti"])[0].name == "kitti"
    assert import_tasks([tmp_path / "a" / "kitti"], tmp_path / "b")[0].name == "kitti"  # a task folder itself


@pytest.mark.parametrize("damage,message", [
    ("corrupt", "1 of 4 listed images do not open: images/test/000000.png"),
    ("short", "test.txt lists 710 images, expected 711"),
    ("label", "label 4 is outside 0..3"),
    ("missing", "val200.txt missing"),
])
def test_a_damaged_task_is_one_line_and_leaves_nothing(tmp_path, kitti_files, capsys, damage, message):
    files = dict(kitti_files)
    if damage == "corrupt":
        files["vtab-1k/kitti/images/test/000000.png"] = png()[:30]
    elif damage == "short":
        files["vtab-1k/kitti/test.txt"] = b"\n".join(files["vtab-1k/kitti/test.txt"].splitlines()[:-1]) + b"\n"
    elif damage == "label":
        files["vtab-1k/kitti/val200.txt"] = files["vtab-1k/kitti/val200.txt"].replace(b" 0\n", b" 4\n", 1)
    else:
        del files["vtab-1k/kitti/val200.txt"]
    archive = write_zip(tmp_path / "vtab-1k.zip", files)
    code = main(["data", "import", str(archive), "--out", str(tmp_path / "data"), "--task", "kitti"])
    line = assert_one_line_error(code, capsys.readouterr().err, "vtab-1k task kitti was not installed", message)
    assert "partial" not in line
    assert _leftovers(tmp_path / "data") == []


def test_good_tasks_install_beside_a_failing_one(tmp_path, kitti_files):
    files = {**kitti_files, **{k.replace("/kitti/", "/dtd/"): v for k, v in kitti_files.items()}}
    with pytest.raises(TaskCheckError) as caught:
        import_tasks([write_zip(tmp_path / "both.zip", files)], tmp_path / "data")
    assert caught.value.installed == [tmp_path / "data" / "kitti"]
    (problem,) = caught.value.problems
    assert problem == ("vtab-1k task dtd was not installed: test.txt lists 711 images, expected 1880; "
                       "the labels cover 4 of DTD's 47 classes")  # a copy of kitti is not dtd
    assert _leftovers(tmp_path / "data") == ["kitti"]


def test_existing_tasks_unknown_names_and_escaping_paths_are_refused(tmp_path, kitti_files, capsys):
    archive = write_zip(tmp_path / "vtab-1k.zip", kitti_files)
    out = tmp_path / "data"
    import_tasks([archive], out)
    before = (out / "kitti" / "test.txt").stat().st_mtime_ns
    assert_one_line_error(main(["data", "import", str(archive), "--out", str(out)]), capsys.readouterr().err,
                          "kitti already in", "--overwrite")
    assert (out / "kitti" / "test.txt").stat().st_mtime_ns == before
    assert import_tasks([archive], out, overwrite=True) == [out / "kitti"]
    assert_one_line_error(main(["data", "import", str(archive), "--out", str(out), "--task", "kitty"]),
                          capsys.readouterr().err, "'kitty' is not a vtab-1k task; did you mean kitti?")
    evil = write_zip(tmp_path / "evil.zip", {**kitti_files, "vtab-1k/kitti/../../evil.txt": b"x"})
    with pytest.raises(TaskCheckError, match="refusing to write '../../evil.txt'"):
        import_tasks([evil], tmp_path / "other")
    assert not (tmp_path / "evil.txt").exists() and _leftovers(tmp_path / "other") == []


def test_fgvc_images_missing_from_the_sources_are_named(tmp_path):
    splits = fgvc_splits("flowers")
    images = fgvc_image_files(splits, "jpg")
    del images[next(iter(images))]
    sources = [write_zip(tmp_path / "json.zip", fgvc_json_files(splits, "OxfordFlower")),
               write_tar(tmp_path / "images.tgz", images)]
    with pytest.raises(TaskCheckError, match="1 of the 8189 images its splits list are in none of the sources, "
                                             "e.g. 000.class/image_00000.jpg; add the images .102flowers.tgz"):
        import_tasks(sources, tmp_path / "fgvc")
    assert _leftovers(tmp_path / "fgvc") == []


def test_sources_without_tasks_say_what_they_need(tmp_path, capsys):
    empty = write_zip(tmp_path / "notes.zip", {"readme.txt": b"hello"})
    assert_one_line_error(main(["data", "import", str(empty), "--out", str(tmp_path / "d")]),
                          capsys.readouterr().err, "hold no VTAB-1k task folder", "no FGVC json splits")
    assert_one_line_error(main(["data", "import", str(tmp_path / "nope.zip"), "--out", str(tmp_path / "d")]),
                          capsys.readouterr().err, "does not exist")
