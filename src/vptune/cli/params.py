"""`vptune params`: tuned parameters, bytes per task and the paper's "Total params" for T tasks."""

from __future__ import annotations

import argparse

from ..accounting import StorageReport, storage_report
from ..methods import options_from_text
from .flags import add_head_options, add_method_options, head_options, method_options


def register(subparsers) -> None:
    parser = subparsers.add_parser("params", help="what a method stores per task, and in total for T tasks")
    parser.add_argument("--backbone", required=True, help="timm name, backbone id or checkpoint path")
    parser.add_argument("--arch", help="timm architecture of a checkpoint given as --backbone")
    parser.add_argument("--method", required=True, help="tuning method, e.g. vpt-deep, partial-1, mlp-3")
    parser.add_argument("--tasks", type=int, default=1, help="number of tasks T sharing the backbone (1)")
    parser.add_argument("--num-classes", type=int, default=100, help="classes of each task's head (100)")
    parser.add_argument("--img-size", type=int, help="input size (default: the backbone's)")
    parser.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=False,
                        help="load pretrained weights (not needed: only shapes count; default off)")
    add_method_options(parser)
    add_head_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = storage_report(
        args.backbone,
        args.method,
        tasks=args.tasks,
        num_classes=args.num_classes,
        pretrained=args.pretrained,
        img_size=args.img_size,
        arch=args.arch,
        head=args.head,
        head_options=head_options(args),
        **options_from_text(args.method, method_options(args)),
    )
    print(format_report(report))
    return 0


def format_report(report: StorageReport) -> str:
    """The report as aligned `name  value` lines."""
    options = ", ".join(f"{key}={value}" for key, value in report.options.items())
    head = ", ".join(f"{key}={value}" for key, value in report.head.items() if key != "kind")
    head = f"{report.head['kind']} ({head})" if head else report.head["kind"]
    shared = f"{report.backbone_params:,} + " if report.shares_backbone else ""
    rows = [
        ("backbone", f"{report.backbone} ({report.backbone_params:,} parameters)"),
        ("method", f"{report.method} ({options})" if options else report.method),
        ("tuned per task", f"{report.tuned_params:,} parameters, {report.head_params:,} of them the "
                           f"{report.num_classes}-class head {head}"),
        ("share of backbone", f"{100 * report.share:.3f}% "
                              f"({100 * (report.tuned_params - report.head_params) / report.backbone_params:.3f}% "
                              "without the head)"),
        ("bytes per task", f"{report.bytes_per_task:,} (the file vptune.save writes)"),
        ("total params", f"{report.total_multiple:.2f}x for {report.tasks} tasks = ({shared}{report.tasks} x "
                         f"{report.tuned_params:,}) / {report.backbone_params:,}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
