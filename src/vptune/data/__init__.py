"""Datasets: the split formats users have (VTAB-1k, FGVC json, class folders; ADE20K, VOC, Cityscapes,
mask folder pairs for segmentation), transforms, offline tasks."""

from vptune.data.dataset import ImageDataset, load_rgb
from vptune.data.formats import TaskSplit, carve_val, load_split, resolve_task_dir
from vptune.data.prepare import available_tasks, prepare_task
from vptune.data.seg_dataset import SegDataset, seg_collate
from vptune.data.seg_formats import IGNORE_INDEX, SegSplit, load_seg_split
from vptune.data.seg_transforms import SegTransform
from vptune.data.transforms import PROTOCOLS, ImageTransform, InputSpec, build_transform, input_spec

__all__ = [
    "IGNORE_INDEX",
    "PROTOCOLS",
    "ImageDataset",
    "ImageTransform",
    "InputSpec",
    "SegDataset",
    "SegSplit",
    "SegTransform",
    "TaskSplit",
    "available_tasks",
    "build_transform",
    "carve_val",
    "input_spec",
    "load_rgb",
    "load_seg_split",
    "load_split",
    "prepare_task",
    "resolve_task_dir",
    "seg_collate",
]
