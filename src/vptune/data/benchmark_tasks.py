"""The tasks of VTAB-1k and FGVC as the VPT paper evaluates them: names, groups, classes, split sizes.

Every downloaded or imported task is checked against this table (`vptune.data.verify`).

Sources:
- VTAB-1k class counts: the VTAB task definitions (google-research/task_adaptation, as vendored
  in NOAH's `data/vtab-source`), the same numbers PETL_Vision keeps in `utils/global_var.py`
  (`VTAB_DATASETS`) and V-PETL Bench in its per-task configs (`class_num`; its caltech101
  configs say 200, a slip: Caltech101 has 102 classes with the background class).
- VTAB-1k split sizes: 800 / 200 / 1000 training images by definition; test sizes are the
  "test" splits VTAB's task code carves from the TFDS datasets (e.g. dSprites: 737,280 images,
  80% train, 10% val, the other 73,728 test; SmallNORB: the second half of TFDS test, 12,150;
  EuroSAT and Resisc45: 20% of 27,000 and 31,500), as listed in the VPT paper's dataset table
  (Jia et al., ECCV 2022, appendix).
- VTAB-1k folder names: NOAH's `get_vtab1k.py`, which wrote the `vtab-1k/<task>/` copies most
  follow-up work shares (`cifar`, `clevr_count`, `dsprites_loc`, `smallnorb_azi`, ...); other
  copies' names are accepted through `formats.canonical_task_name`.
- FGVC: classes and the train / val / test sizes of the VPT authors' json splits from the VPT
  paper's dataset table; train + val equals each dataset's official training set (CUB 5,994,
  NABirds 23,929, Flowers 1,020 + 1,020, Dogs 12,000, Cars 8,144) and test its official test
  set. Folder names and image folders as the VPT code (`src/data/datasets/json_dataset.py`)
  and V-PETL Bench read them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from vptune.data.formats import canonical_task_name
from vptune.errors import DataError

VTAB_1K, FGVC = "vtab-1k", "fgvc"
BENCHMARKS = (VTAB_1K, FGVC)
VTAB_GROUPS = ("natural", "specialized", "structured")


@dataclass(frozen=True)
class BenchmarkTask:
    """One task: vptune's folder name, its benchmark and group, classes and images per split file."""

    name: str
    title: str
    benchmark: str
    group: str
    num_classes: int
    split_sizes: dict[str, int]
    # FGVC only: folder names other copies use, the folder VPT's json paths are relative to
    # (inside the task folder), and where the images can be had.
    aliases: tuple[str, ...] = ()
    image_dir: str = "."
    images_from: str = ""

    @property
    def split_files(self) -> tuple[str, ...]:
        suffix = ".txt" if self.benchmark == VTAB_1K else ".json"
        return tuple(split + suffix for split in self.split_sizes)


def _vtab(name: str, title: str, group: str, num_classes: int, test: int) -> BenchmarkTask:
    sizes = {"train800": 800, "val200": 200, "train800val200": 1000, "test": test}
    return BenchmarkTask(name, title, VTAB_1K, group, num_classes, sizes)


def _fgvc(name: str, title: str, num_classes: int, train: int, val: int, test: int, *, aliases: tuple[str, ...],
          image_dir: str, images_from: str) -> BenchmarkTask:
    sizes = {"train": train, "val": val, "test": test}
    return BenchmarkTask(name, title, FGVC, FGVC, num_classes, sizes, aliases, image_dir, images_from)


# In the order of the VPT paper's tables.
VTAB_TASKS = (
    _vtab("cifar", "CIFAR-100", "natural", 100, 10_000),
    _vtab("caltech101", "Caltech101", "natural", 102, 6_084),
    _vtab("dtd", "DTD", "natural", 47, 1_880),
    _vtab("oxford_flowers102", "Flowers102", "natural", 102, 6_149),
    _vtab("oxford_iiit_pet", "Pets", "natural", 37, 3_669),
    _vtab("svhn", "SVHN", "natural", 10, 26_032),
    _vtab("sun397", "Sun397", "natural", 397, 21_750),
    _vtab("patch_camelyon", "Patch Camelyon", "specialized", 2, 32_768),
    _vtab("eurosat", "EuroSAT", "specialized", 10, 5_400),
    _vtab("resisc45", "Resisc45", "specialized", 45, 6_300),
    _vtab("diabetic_retinopathy", "Retinopathy", "specialized", 5, 42_670),
    _vtab("clevr_count", "Clevr/count", "structured", 8, 15_000),
    _vtab("clevr_dist", "Clevr/distance", "structured", 6, 15_000),
    _vtab("dmlab", "DMLab", "structured", 6, 22_735),
    _vtab("kitti", "KITTI/distance", "structured", 4, 711),
    _vtab("dsprites_loc", "dSprites/location", "structured", 16, 73_728),
    _vtab("dsprites_ori", "dSprites/orientation", "structured", 16, 73_728),
    _vtab("smallnorb_azi", "SmallNORB/azimuth", "structured", 18, 12_150),
    _vtab("smallnorb_ele", "SmallNORB/elevation", "structured", 9, 12_150),
)

FGVC_TASKS = (
    _fgvc("cub", "CUB-200-2011", 200, 5_394, 600, 5_794, aliases=("cub_200_2011", "cub200", "cub_200"),
          image_dir="images", images_from="CUB_200_2011.tgz from https://data.caltech.edu/records/65de6-vp158"),
    _fgvc("nabirds", "NABirds", 555, 21_536, 2_393, 24_633, aliases=("nabird",),
          image_dir="images", images_from="nabirds.tar.gz from https://dl.allaboutbirds.org/nabirds"),
    _fgvc("flowers", "Oxford Flowers", 102, 1_020, 1_020, 6_149,
          aliases=("oxfordflower", "oxford_flowers", "flowers102"),
          image_dir=".", images_from="102flowers.tgz from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"),
    _fgvc("dogs", "Stanford Dogs", 120, 10_800, 1_200, 8_580, aliases=("stanforddogs", "stanford_dogs"),
          image_dir="Images", images_from="images.tar from http://vision.stanford.edu/aditya86/ImageNetDogs/"),
    _fgvc("cars", "Stanford Cars", 196, 7_329, 815, 8_041, aliases=("stanfordcars", "stanford_cars"),
          image_dir=".", images_from="cars_train.tgz and cars_test.tgz (Stanford's own links are offline; "
          "use a copy that keeps the cars_train/ and cars_test/ file names)"),
)

TASKS = {VTAB_1K: VTAB_TASKS, FGVC: FGVC_TASKS}


def benchmark_tasks(benchmark: str) -> tuple[BenchmarkTask, ...]:
    """The tasks of `benchmark` ('vtab-1k' or 'fgvc') in the paper's order."""
    if benchmark not in TASKS:
        raise DataError(f"unknown benchmark '{benchmark}'; choose {' or '.join(BENCHMARKS)}")
    return TASKS[benchmark]


def find_task(benchmark: str, name: str) -> BenchmarkTask:
    """The task of `benchmark` called `name` (VTAB-1k folder aliases such as `cifar100` are accepted).

    Raises DataError naming the closest task names when there is none.
    """
    tasks = benchmark_tasks(benchmark)
    wanted = canonical_task_name(name) if benchmark == VTAB_1K else _fold(name)
    for task in tasks:
        if wanted == task.name or wanted in task.aliases:
            return task
    names = [task.name for task in tasks]
    close = difflib.get_close_matches(name.lower(), names, n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise DataError(f"'{name}' is not a {benchmark} task; {hint}the tasks are: {', '.join(names)}")


def task_for_folder(benchmark: str, folder: str) -> BenchmarkTask | None:
    """The task a folder of that name holds in another copy of `benchmark`, or None."""
    try:
        return find_task(benchmark, folder)
    except DataError:
        return None


def _fold(name: str) -> str:
    return name.lower().replace("-", "_")
