"""Install VTAB-1k and FGVC tasks from archives or folders users hold, checked before they count as done.

VTAB-1k: any zip, tar or folder holding `<task>/{train800,val200,train800val200,test}.txt`
with the images they list (NOAH's `vtab-1k.zip` and the copies derived from it; task folders
may carry other copies' names, e.g. `cifar100`). FGVC: the VPT authors' json splits
(`<dataset>/{train,val,test}.json`, e.g. from V-PETL Bench's `json.zip`) together with the
image archives of each dataset; images are found by the last two components of the paths
the json files list, so the archives' own folder layout does not matter.

Each task is built in a hidden folder beside its final place, checked against the table in
`benchmark_tasks` (`verify.task_problems`), and only then renamed into place; a task that
fails leaves nothing behind and is reported in one line.
"""

from __future__ import annotations

import json
import posixpath
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from vptune.data.archives import Source
from vptune.data.benchmark_tasks import FGVC, VTAB_1K, BenchmarkTask, benchmark_tasks, find_task, task_for_folder
from vptune.data.formats import FGVC_SPLITS, IMAGE_EXTENSIONS, VTAB_SPLITS
from vptune.data.verify import task_problems
from vptune.errors import DataError
from vptune.files import atomic_folder

VTAB_SPLIT_FILES = frozenset(f"{split}.txt" for split in VTAB_SPLITS)
FGVC_SPLIT_FILES = frozenset(f"{split}.json" for split in FGVC_SPLITS)


class TaskCheckError(DataError):
    """Some tasks failed their check and were not installed; `problems` holds one line per task."""

    def __init__(self, problems: list[str], installed: list[Path]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.installed = installed


@dataclass(frozen=True)
class Location:
    """Where a task's split files sit: a source and the folder inside it ('' for its top)."""

    source: Source
    folder: str

    def __str__(self) -> str:
        return f"{self.source.path}" + (f" ({self.folder}/)" if self.folder else "")


def import_tasks(
    sources: Iterable[str | Path | Source],
    out: str | Path,
    *,
    benchmark: str | None = None,
    tasks: Iterable[str] | None = None,
    overwrite: bool = False,
    show: bool | None = None,
) -> list[Path]:
    """Install tasks found in `sources` (archives or folders) into `<out>/<task>`; return their folders.

    `benchmark` ('vtab-1k' or 'fgvc') is read from the sources when not given; `tasks` (default:
    every task the sources hold) are names of the table in `benchmark_tasks`. `show` draws
    progress bars (default: when stderr is a terminal).

    Raises:
        DataError: unknown task, nothing to import, a task already installed (without `overwrite`).
        TaskCheckError: tasks that failed their check (the others are installed).
    """
    sources = [s if isinstance(s, Source) else Source(s) for s in sources]
    if not sources:
        raise DataError("nothing to import; pass archives (.zip, .tar, .tgz) or folders")
    show = sys.stderr.isatty() if show is None else show
    found = {VTAB_1K: _locate(sources, VTAB_SPLIT_FILES, VTAB_1K), FGVC: _locate(sources, FGVC_SPLIT_FILES, FGVC)}
    benchmark = benchmark or _benchmark_of(found, sources)
    wanted = [find_task(benchmark, name) for name in tasks] if tasks else \
        [task for task in benchmark_tasks(benchmark) if task.name in found[benchmark]]
    out = Path(out).expanduser().absolute()
    refuse_existing(out, [task.name for task in wanted], overwrite)
    installed, problems = [], []
    for task in wanted:
        try:
            with atomic_folder(out / task.name, overwrite=overwrite) as staging:
                location = _one_location(task, found[benchmark].get(task.name, []), sources)
                if benchmark == VTAB_1K:
                    _fill_vtab(task, location, staging, show)
                else:
                    _fill_fgvc(task, location, sources, staging, show)
                trouble = task_problems(staging, task, show=show)
                if trouble:
                    raise DataError("; ".join(trouble))
        except DataError as exc:
            problems.append(f"{benchmark} task {task.name} was not installed: {exc}")
            continue
        installed.append(out / task.name)
    if problems:
        raise TaskCheckError(problems, installed)
    return installed


def _locate(sources: list[Source], split_files: frozenset[str], benchmark: str) -> dict[str, list[Location]]:
    """Task name -> the folders of the sources that hold its split files."""
    found: dict[str, list[Location]] = {}
    for source in sources:
        folders = {posixpath.dirname(name) for name in source.names() if posixpath.basename(name) in split_files}
        for folder in sorted(folders):
            # A split file at the top of a source belongs to the task the source itself is named after.
            task = task_for_folder(benchmark, posixpath.basename(folder) if folder else source.stem)
            if task is not None:
                found.setdefault(task.name, []).append(Location(source, folder))
    return found


def _benchmark_of(found: dict[str, dict[str, list[Location]]], sources: list[Source]) -> str:
    held = [benchmark for benchmark, tasks in found.items() if tasks]
    if len(held) == 1:
        return held[0]
    names = ", ".join(str(s.path) for s in sources)
    if held:
        raise DataError(f"{names} hold both VTAB-1k and FGVC tasks; pass --benchmark vtab-1k or --benchmark fgvc")
    raise DataError(f"{names} hold no VTAB-1k task folder (<task>/train800.txt, val200.txt, ...) and no FGVC "
                    "json splits (<dataset>/train.json, val.json, test.json); `vptune data list` names the tasks")


def refuse_existing(out: str | Path, names: list[str], overwrite: bool) -> None:
    """DataError when a task folder `<out>/<name>` exists already and `overwrite` is not set."""
    out = Path(out).expanduser().absolute()
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise DataError(f"{', '.join(existing)} already in {out}; remove {'them' if len(existing) > 1 else 'it'} "
                        "or pass --overwrite (overwrite=True)")


def _one_location(task: BenchmarkTask, locations: list[Location], sources: list[Source]) -> Location:
    if len(locations) == 1:
        return locations[0]
    if locations:
        raise DataError(f"found twice, in {' and '.join(map(str, locations))}; import one of them")
    split = task.split_files[0]
    raise DataError(f"no {task.name} split files ({split}, ...) in {', '.join(str(s.path) for s in sources)}")


def _inside(root: Path, relative: str) -> Path:
    """`root / relative`, refusing paths that would leave `root` (absolute, `..`)."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise DataError(f"refusing to write '{relative}': it would land outside {root}")
    return root.joinpath(*parts)


def _progress(total: int, what: str, show: bool) -> tqdm:
    return tqdm(total=total, desc=what, unit="file", disable=not show)


# ---------------------------------------------------------------- VTAB-1k


def _fill_vtab(task: BenchmarkTask, location: Location, target: Path, show: bool) -> None:
    """Copy every file of the task folder (split lists, images, class names) into `target`."""
    prefix = f"{location.folder}/" if location.folder else ""
    wanted = {name: _inside(target, name[len(prefix):])
              for name in location.source.names() if name.startswith(prefix)}
    with _progress(len(wanted), f"copying {task.name}", show) as bar:
        location.source.extract(wanted, bar.update)


# ---------------------------------------------------------------- FGVC


def _fill_fgvc(task: BenchmarkTask, location: Location, sources: list[Source], target: Path, show: bool) -> None:
    """Write the task's json splits (labels made 0..K-1) and copy every image they list into `target`."""
    splits = _read_fgvc_splits(location)
    ids = sorted({label for entries in splits.values() for label in entries.values()})
    # The VPT code maps class ids to 0..K-1 in sorted order; copies whose ids are sparse
    # (NABirds' ids are) get the same mapping, with the original ids kept as class names.
    remap = {old: new for new, old in enumerate(ids)}
    for name, entries in splits.items():
        text = json.dumps({path: remap[label] for path, label in entries.items()}, indent=1)
        (target / name).write_text(text + "\n")
    if ids != list(range(len(ids))):
        (target / "classes.txt").write_text("\n".join(map(str, ids)) + "\n")
    images = sorted({path for entries in splits.values() for path in entries})
    members = _find_images(images, sources, task)
    base = target / task.image_dir
    by_source: dict[Source, dict[str, Path]] = {}
    for image, (source, member) in members.items():
        by_source.setdefault(source, {})[member] = _inside(base, image)
    with _progress(len(members), f"copying {task.name} images", show) as bar:
        for source, wanted in by_source.items():
            source.extract(wanted, bar.update)


def _read_fgvc_splits(location: Location) -> dict[str, dict[str, int]]:
    """`<split>.json` (and the data-scale `train_<pct>.json`) of the task folder: file name -> {image: id}."""
    prefix = f"{location.folder}/" if location.folder else ""
    splits = {}
    for name in location.source.names():
        file = name[len(prefix):]
        if not name.startswith(prefix) or "/" in file or not file.endswith(".json"):
            continue
        stem = file[: -len(".json")]
        if stem in FGVC_SPLITS or stem.startswith("train_"):
            splits[file] = _split_entries(location.source.read(name), f"{location.source.path}:{name}")
    return splits


def _split_entries(raw: bytes, where: str) -> dict[str, int]:
    try:
        entries = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{where} is not valid JSON ({exc}); expected {{image path: class id}}") from exc
    if not isinstance(entries, dict):
        raise DataError(f"{where}: expected a JSON object {{image path: class id}}")
    bad = next((k for k, v in entries.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0), None)
    if bad is not None:
        raise DataError(f"{where}[{bad!r}]: class id {entries[bad]!r} is not a whole number >= 0")
    return entries


def _find_images(images: list[str], sources: list[Source], task: BenchmarkTask) -> dict[str, tuple[Source, str]]:
    """For each json image path, the source member holding it, matched on the path's last two parts."""
    index: dict[str, list[tuple[Source, str]]] = {}
    for source in sources:
        for name in source.names():
            if PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS:
                index.setdefault(_tail(name), []).append((source, name))
    found, missing = {}, []
    for image in images:
        candidates = index.get(_tail(image), [])
        if len(candidates) > 1:
            # Two archives (or folders) hold a file of this name: prefer the one whose whole path ends like the json's.
            candidates = [c for c in candidates if ("/" + c[1]).endswith("/" + image)] or candidates
        if len(candidates) != 1:
            missing.append((image, len(candidates)))
            continue
        found[image] = candidates[0]
    if missing:
        image, count = missing[0]
        why = "in several places" if count else "in none of the sources"
        raise DataError(f"{len(missing)} of the {len(images)} images its splits list are {why}, e.g. {image}; "
                        f"add the images ({task.images_from})")
    return found


def _tail(path: str) -> str:
    return "/".join(PurePosixPath(path).parts[-2:])
