"""Download VTAB-1k and FGVC from the community copies on the Hugging Face Hub, then install them checked.

What vptune relies on about those repositories (they cannot be read from where vptune is
developed; the facts come from public code and documents that use them):
- `XiN0919/VTAB-1k` (dataset) is V-PETL Bench's copy of VTAB-1k: its README links the
  repository as the VTAB-1k download, and public download scripts fetch one file from it,
  `vtab-1k.zip` (4.66 GB), that unzips to `vtab-1k/<task>/` in NOAH's layout
  (`train800.txt` ... lines `images/<split>/NNNNNN.jpg <label>`). The task folders' exact
  names are not confirmed (V-PETL Bench's configs say `cifar100`, projects that use the copy
  say `cifar`); any name `formats.canonical_task_name` knows is accepted.
- `XiN0919/FGVC` (dataset) holds `json.zip`, the VPT authors' FGVC json splits (V-PETL
  Bench's README links it; its loaders read `<dataset>/{train,val,test}.json` with the VPT
  folder names `CUB_200_2011`, `nabirds`, `OxfordFlower`, `StanfordDogs`, `StanfordCars`).
  Its layout inside the zip is not confirmed; the splits are found by folder name wherever
  they sit. Public scripts also download `CUB_200_2011.tgz` from it (1,150,585,339 bytes,
  the CaltechDATA archive's size and MD5) and `car_ims.tgz` with `cars_annos.mat`.
  `car_ims/` does not hold the `cars_train/` / `cars_test/` file names VPT's Cars splits list,
  so it cannot serve them; no archive of NABirds, Oxford Flowers or Stanford Dogs images is
  known there. For those tasks the images come from the user (`images=`, `--images`).

Nothing is installed until it passes `verify.task_problems`; a copy on the Hub that differs
from the table (a missing or extra image, a wrong label) is reported, not accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from vptune.data.benchmark_tasks import FGVC, VTAB_1K, VTAB_TASKS, find_task
from vptune.data.importer import import_tasks, refuse_existing
from vptune.errors import DataError
from vptune.hub.client import describe, download, list_files

VTAB_REPO = "XiN0919/VTAB-1k"
VTAB_ARCHIVE = "vtab-1k.zip"
FGVC_REPO = "XiN0919/FGVC"
FGVC_SPLITS_ARCHIVE = "json.zip"
# Image archives known to be in FGVC_REPO and to hold the files VPT's splits list.
FGVC_HUB_IMAGES = {"cub": ("CUB_200_2011.tgz",)}


def download_vtab1k(
    out: str | Path,
    tasks: Iterable[str] | None = None,
    *,
    repo: str = VTAB_REPO,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    show: bool | None = None,
) -> list[Path]:
    """Download VTAB-1k from `repo` and install `tasks` (default: all 19) into `<out>/<task>`, checked.

    The archive stays in the Hugging Face cache, so installing more tasks later downloads
    nothing. Raises DataError (unknown task, existing folder), VptuneError (the Hub), and
    `importer.TaskCheckError` for tasks that fail their check (the others are installed).
    """
    wanted = [find_task(VTAB_1K, name).name for name in tasks] if tasks else [task.name for task in VTAB_TASKS]
    refuse_existing(out, wanted, overwrite)
    archive = download(repo, VTAB_ARCHIVE, repo_type="dataset", revision=revision, cache_dir=cache_dir)
    return import_tasks([archive], out, benchmark=VTAB_1K, tasks=wanted, overwrite=overwrite, show=show)


def download_fgvc(
    out: str | Path,
    tasks: Sequence[str],
    *,
    images: Iterable[str | Path] = (),
    repo: str = FGVC_REPO,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    show: bool | None = None,
) -> list[Path]:
    """Install FGVC `tasks` into `<out>/<task>` with the VPT json splits from `repo`, checked.

    Images come from `images` (archives or folders the user holds) when given, else from the
    Hub where an archive of them is known there (CUB-200-2011); for other tasks without
    `images` this raises DataError naming where to get them. Raises as `download_vtab1k`.
    """
    if not tasks:
        raise DataError("name the FGVC tasks to download (--task cub, nabirds, flowers, dogs or cars)")
    wanted = [find_task(FGVC, name) for name in tasks]
    refuse_existing(out, [task.name for task in wanted], overwrite)
    images = list(images)
    if not images:
        _require_hub_images(wanted, repo, revision)
    sources = [download(repo, FGVC_SPLITS_ARCHIVE, repo_type="dataset", revision=revision, cache_dir=cache_dir)]
    sources += images or [download(repo, name, repo_type="dataset", revision=revision, cache_dir=cache_dir)
                          for task in wanted for name in FGVC_HUB_IMAGES[task.name]]
    return import_tasks(sources, out, benchmark=FGVC, tasks=[task.name for task in wanted], overwrite=overwrite,
                        show=show)


def _require_hub_images(tasks: list, repo: str, revision: str | None) -> None:
    lacking = [task for task in tasks if task.name not in FGVC_HUB_IMAGES]
    if not lacking:
        return
    task = lacking[0]
    held = ", ".join(list_files(repo, repo_type="dataset", revision=revision))
    raise DataError(f"{describe(repo, 'dataset', revision)} holds no {task.title} images vptune can use (it holds: "
                    f"{held}); get {task.images_from} and pass it with --images (images=); the splits still come "
                    "from the Hub")
