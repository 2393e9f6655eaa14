"""`vptune data download` against a Hub stand-in on 127.0.0.1: real huggingface_hub downloads, checked installs.

The commands run in one fresh process whose environment points huggingface_hub at the local
server (HF_ENDPOINT), a private cache (HF_HOME) and a token (HF_TOKEN), as a user's would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmark_archives import (fgvc_image_files, fgvc_json_files, fgvc_splits, noah_vtab_files, png, write_tar,
                                write_zip)
from cli_batch import run_batch
from hub_server import LocalHub

MiB = 1 << 20
CUT = 10 * MiB + MiB // 2  # past huggingface_hub's first 10 MiB chunk, so the retry asks for a range


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("hub")
    kitti = noah_vtab_files("kitti", distinct=True)
    # Padding outside any task folder makes the archive longer than one download chunk.
    good = write_zip(tmp / "good.zip", {**kitti, "vtab-1k/padding.bin": os.urandom(12 * MiB)})
    shared = noah_vtab_files("kitti")
    corrupt = write_zip(tmp / "corrupt.zip", {**shared, "vtab-1k/kitti/images/val200/000000.png": png()[:30]})
    test_list = shared["vtab-1k/kitti/test.txt"].splitlines()
    short = write_zip(tmp / "short.zip", {**shared, "vtab-1k/kitti/test.txt": b"\n".join(test_list[:-1]) + b"\n"})
    flowers = fgvc_splits("flowers", first_id=1)  # Oxford Flowers' own ids start at 1
    cub = fgvc_splits("cub")
    json_zip = write_zip(tmp / "json.zip", {**fgvc_json_files(flowers, "OxfordFlower"),
                                            **fgvc_json_files(cub, "CUB_200_2011")})
    # A CUB archive holding one image less than the splits list.
    cub_images = fgvc_image_files(cub, "CUB_200_2011/images")
    del cub_images[next(iter(cub_images))]
    flowers_images = write_tar(tmp / "102flowers.tgz", fgvc_image_files(flowers, "jpg"))
    out = tmp / "out"
    with LocalHub() as hub:
        hub.add("dataset", "XiN0919/VTAB-1k", {"vtab-1k.zip": good.read_bytes(), "README.md": b"VTAB-1k"})
        hub.add("dataset", "test/vtab-corrupt", {"vtab-1k.zip": corrupt.read_bytes()})
        hub.add("dataset", "test/vtab-short", {"vtab-1k.zip": short.read_bytes()})
        hub.add("dataset", "XiN0919/FGVC", {"json.zip": json_zip.read_bytes(), "README.md": b"FGVC",
                                            "CUB_200_2011.tgz": write_tar(tmp / "cub.tgz", cub_images).read_bytes()})
        hub.cut_after["vtab-1k.zip"] = CUT  # the first download of it drops its connection
        download = ["data", "download"]
        calls = {
            "first": [*download, "vtab-1k", "--task", "kitti", "--out", out / "a"],
            "cached": [*download, "vtab-1k", "--task", "dtd", "--out", out / "b"],
            "unknown": [*download, "vtab-1k", "--task", "kitty", "--out", out / "c"],
            "corrupt": [*download, "vtab-1k", "--repo", "test/vtab-corrupt", "--task", "kitti", "--out", out / "d"],
            "short": [*download, "vtab-1k", "--repo", "test/vtab-short", "--task", "kitti", "--out", out / "e"],
            "revision": [*download, "vtab-1k", "--revision", "v9", "--task", "kitti", "--out", out / "f"],
            "flowers": [*download, "fgvc", "--task", "flowers", "--images", flowers_images, "--out", out / "g"],
            "dogs": [*download, "fgvc", "--task", "dogs", "--out", out / "h"],
            "cub": [*download, "fgvc", "--task", "cub", "--out", out / "i"],
        }
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp / "hf-home"), "HF_TOKEN": "hf_local_test"}
        results = run_batch(list(calls.values()), env)
    return SimpleNamespace(hub=hub, out=out, cache=tmp / "hf-home" / "hub", **dict(zip(calls, results)))


def _one_error_line(result: dict, *fragments: str) -> str:
    lines = [line for line in result["err"].splitlines() if line.strip()]
    assert result["code"] == 1 and len(lines) == 1 and lines[0].startswith("vptune: error: "), result
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def test_a_dropped_download_resumes_with_a_range_request(session):
    assert session.first["code"] == 0, session.first
    assert session.first["out"].split() == [str(session.out / "a" / "kitti")]
    first, resumed = session.hub.downloads("vtab-1k.zip")[:2]
    assert first.range is None and resumed.range is not None
    assert int(resumed.range.split("=")[1].rstrip("-")) >= 10 * MiB  # what arrived was kept
    assert (session.out / "a" / "kitti" / "images" / "test" / "000710.png").is_file()


def test_the_cache_and_the_token_are_the_users(session):
    # The second command reused the cached archive: one archive download (and its resumption) in all.
    assert len([r for r in session.hub.downloads("vtab-1k.zip") if "XiN0919/VTAB-1k" in r.path]) == 2
    assert list(session.cache.glob("datasets--XiN0919--VTAB-1k/snapshots/*/vtab-1k.zip"))
    assert {r.authorization for r in session.hub.requests if "/resolve/" in r.path} == {"Bearer hf_local_test"}
    _one_error_line(session.cached, "vtab-1k task dtd was not installed: no dtd split files")


def test_unknown_task_and_revision_are_one_line(session):
    _one_error_line(session.unknown, "'kitty' is not a vtab-1k task; did you mean kitti?")
    _one_error_line(session.revision, "dataset XiN0919/VTAB-1k@v9: revision 'v9' does not exist")
    assert _nothing_in(session.out / "c") and _nothing_in(session.out / "f")


def test_a_corrupt_image_or_a_short_split_installs_nothing(session):
    _one_error_line(session.corrupt, "vtab-1k task kitti was not installed: 1 of 4 listed images do not open: "
                                     "images/val200/000000.png")
    _one_error_line(session.short, "vtab-1k task kitti was not installed: test.txt lists 710 images, expected 711")
    assert _nothing_in(session.out / "d") and _nothing_in(session.out / "e")


def test_fgvc_splits_from_the_hub_with_images_the_user_holds(session):
    assert session.flowers["code"] == 0, session.flowers
    task = session.out / "g" / "flowers"
    val = json.loads((task / "val.json").read_text())
    assert sorted(set(val.values())) == list(range(102))  # ids 1..102 made 0..101, as the VPT code does
    assert (task / "classes.txt").read_text().split() == [str(i) for i in range(1, 103)]
    assert all((task / image).is_file() for image in val)


def test_fgvc_without_images_says_where_to_get_them(session):
    _one_error_line(session.dogs, "XiN0919/FGVC holds no Stanford Dogs images", "CUB_200_2011.tgz, README.md, json.zip",
                    "images.tar from http://vision.stanford.edu/aditya86/ImageNetDogs/", "--images")
    _one_error_line(session.cub, "fgvc task cub was not installed: 1 of the 11788 images its splits list are in none "
                                 "of the sources")
    assert len(session.hub.downloads("CUB_200_2011.tgz")) == 1
    assert _nothing_in(session.out / "h") and _nothing_in(session.out / "i")
