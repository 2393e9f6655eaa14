"""Semantic segmentation: dataset layouts (ADE20K, VOC, Cityscapes, folder pairs), joint image/mask transforms,
offline scenes, the SETR loss, mIoU metrics and sliding-window inference.

The task type that trains and scores with them is `vptune.tasks.segmentation`.
"""
