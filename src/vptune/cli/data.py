"""`vptune data`: download, import and list VTAB-1k and FGVC tasks; prepare the offline tasks."""

from __future__ import annotations

import argparse
import sys

from ..data import available_tasks, prepare_task
from ..data.benchmark_tasks import BENCHMARKS, FGVC, FGVC_TASKS, VTAB_1K, VTAB_TASKS
from ..data.download import FGVC_REPO, VTAB_REPO, download_fgvc, download_vtab1k
from ..data.importer import TaskCheckError, import_tasks
from ..hub.client import show_progress


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="download, import, list and prepare tasks")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    download = actions.add_parser(
        "download", help="download VTAB-1k or FGVC tasks from the Hugging Face Hub and install them, checked",
        description="Download the community copies on the Hugging Face Hub (VTAB-1k: "
                    f"{VTAB_REPO}; FGVC splits: {FGVC_REPO}) into the Hugging Face cache, then install each task "
                    "into OUT/<task> once its split files, sizes, labels and images pass the check against the "
                    "paper's table (`vptune data list`). Uses HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE "
                    "and your Hugging Face token as huggingface_hub does.")
    download.add_argument("benchmark", choices=BENCHMARKS, help="vtab-1k or fgvc")
    download.add_argument("--task", dest="tasks", action="append", metavar="NAME",
                          help="task to install (repeatable or comma-separated; default: all 19 of VTAB-1k; "
                               "FGVC: required, cub, nabirds, flowers, dogs or cars)")
    download.add_argument("--out", required=True, metavar="DIR", help="data root; each task goes to DIR/<task>")
    download.add_argument("--images", action="append", default=[], metavar="ARCHIVE_OR_DIR",
                          help="FGVC: image archives or folders you hold (repeatable); the splits still come from "
                               "the Hub (default: the Hub's images, known only for cub)")
    download.add_argument("--repo", help=f"Hub dataset to download from (default: {VTAB_REPO} / {FGVC_REPO})")
    download.add_argument("--revision", help="branch, tag or commit of that dataset (default: main)")
    download.add_argument("--cache-dir", help="Hugging Face cache folder (default: HF_HUB_CACHE, "
                                              "~/.cache/huggingface/hub)")
    download.add_argument("--overwrite", action="store_true",
                          help="replace task folders already in DIR (default: refuse)")
    download.set_defaults(func=run_download)

    imported = actions.add_parser(
        "import", help="install VTAB-1k or FGVC tasks from archives or folders you hold, checked",
        description="VTAB-1k: a zip, tar or folder with <task>/{train800,val200,train800val200,test}.txt and their "
                    "images (NOAH's vtab-1k.zip layout). FGVC: the VPT json splits (<dataset>/{train,val,test}.json, "
                    "e.g. json.zip) together with the dataset's image archives. Each task is installed into "
                    "OUT/<task> only after it passes the check against the paper's table.")
    imported.add_argument("sources", nargs="+", metavar="ARCHIVE_OR_DIR", help="archives (.zip, .tar, .tgz) or folders")
    imported.add_argument("--out", required=True, metavar="DIR", help="data root; each task goes to DIR/<task>")
    imported.add_argument("--benchmark", choices=BENCHMARKS, help="vtab-1k or fgvc (default: read from the sources)")
    imported.add_argument("--task", dest="tasks", action="append", metavar="NAME",
                          help="task to install (repeatable or comma-separated; default: every task found)")
    imported.add_argument("--overwrite", action="store_true",
                          help="replace task folders already in DIR (default: refuse)")
    imported.set_defaults(func=run_import)

    listing = actions.add_parser("list", help="list the VTAB-1k and FGVC tasks and the offline tasks")
    listing.set_defaults(func=run_list)

    prepare = actions.add_parser(
        "prepare", help="write an offline task (VTAB-1k folder, or image/mask folders for segmentation)"
    )
    prepare.add_argument("name", metavar="NAME", help=f"one of: {', '.join(available_tasks())}")
    prepare.add_argument("--out", required=True, metavar="ROOT", help="data root; the task goes to ROOT/NAME")
    prepare.add_argument("--seed", type=int, default=0, help="seed of sampling and rendering (0)")
    prepare.add_argument("--n-test", type=int, default=None, help="test images (task default)")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing task folder")
    prepare.set_defaults(func=run_prepare)


def run_download(args: argparse.Namespace) -> int:
    show_progress(sys.stderr.isatty())
    hub = {"revision": args.revision, "cache_dir": args.cache_dir, "overwrite": args.overwrite}
    if args.repo:
        hub["repo"] = args.repo
    tasks = _names(args.tasks)
    if args.benchmark == VTAB_1K:
        return _installed(lambda: download_vtab1k(args.out, tasks, **hub))
    return _installed(lambda: download_fgvc(args.out, tasks, images=args.images, **hub))


def run_import(args: argparse.Namespace) -> int:
    return _installed(lambda: import_tasks(args.sources, args.out, benchmark=args.benchmark, tasks=_names(args.tasks),
                                           overwrite=args.overwrite))


def _installed(install) -> int:
    """Print each installed task folder; each task that failed its check as one error line."""
    try:
        paths = install()
    except TaskCheckError as exc:
        for path in exc.installed:
            print(path)
        for problem in exc.problems:
            print(f"vptune: error: {problem}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def _names(values: list[str] | None) -> list[str] | None:
    return [name.strip() for value in values for name in value.split(",") if name.strip()] if values else None


def run_list(args: argparse.Namespace) -> int:
    print(f"VTAB-1k ({len(VTAB_TASKS)} tasks; vptune data download vtab-1k):")
    print(f"  {'task':<22}{'title':<22}{'group':<13}{'classes':>8}{'test':>8}")
    for task in VTAB_TASKS:
        print(f"  {task.name:<22}{task.title:<22}{task.group:<13}{task.num_classes:>8}{task.split_sizes['test']:>8}")
    print(f"\nFGVC ({len(FGVC_TASKS)} tasks; vptune data download {FGVC} --task NAME):")
    print(f"  {'task':<22}{'title':<22}{'classes':>8}{'train':>8}{'val':>8}{'test':>8}")
    for task in FGVC_TASKS:
        sizes = task.split_sizes
        print(f"  {task.name:<22}{task.title:<22}{task.num_classes:>8}{sizes['train']:>8}{sizes['val']:>8}"
              f"{sizes['test']:>8}")
    print("\nOffline tasks (vptune data prepare NAME):")
    print("\n".join(f"  {name}" for name in available_tasks()))
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    path = prepare_task(args.name, args.out, seed=args.seed, n_test=args.n_test, overwrite=args.overwrite)
    print(path)
    return 0
