"""Datasets: the split formats users have (VTAB-1k, FGVC json, class folders), transforms, offline tasks.
Segmentation layouts live in `vptune.segmentation`."""

from vptune.data.dataset import ImageDataset, load_rgb
from vptune.data.formats import TaskSplit, carve_val, load_split, resolve_task_dir
from vptune.data.prepare import available_tasks, prepare_task
from vptune.data.transforms import PROTOCOLS, ImageTransform, InputSpec, build_transform, input_spec

__all__ = [
    "PROTOCOLS",
    "ImageDataset",
    "ImageTransform",
    "InputSpec",
    "TaskSplit",
    "available_tasks",
    "build_transform",
    "carve_val",
    "input_spec",
    "load_rgb",
    "load_split",
    "prepare_task",
    "resolve_task_dir",
]
