"""`vptune sweep`: the paper's protocol over tasks x methods x a grid, from flags or a YAML file."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from ..engine import TrainConfig
from ..engine.config import read_yaml
from ..errors import VptuneError
from ..experiments.sweep import build_spec, format_summary, run_sweep, summary
from ..experiments.sweep.grid import GRID_NAMES, parse_grid_item
from ..experiments.sweep.spec import LAUNCHERS, SELECT_RULES
from .flags import add_training_options, method_options


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="tune on validation, retrain the chosen settings with seeds, test; one results table",
        description="Train every grid point on the tuning split (train800 / train), choose per task x method by "
                    "validation top-1, retrain the choice on the full training split (train800val200 / train+val) "
                    "with --seeds seeds and evaluate on test. Rerun the same command to finish an interrupted "
                    "sweep. Flags override --config; other flags are settings for every trial.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="YAML file: data, out, tasks, methods (list or name: {settings, grid}), "
                        "grid_name, grid, vary, seeds, select, launcher, ... and any training setting")
    parser.add_argument("--data", help="root folder holding task folders")
    parser.add_argument("--task", dest="tasks", action="append", help="task (repeatable, or comma-separated)")
    parser.add_argument("--method", dest="methods", action="append", help="method (repeatable, or comma-separated)")
    parser.add_argument("--grid-name", choices=GRID_NAMES, help="named grid: default (AdamW, reduced) or paper")
    parser.add_argument("--grid", action="append", metavar="[METHOD:]KEY=V1,V2",
                        help="tune over these values instead of the named grid's (repeatable), "
                             "e.g. lr=0.01,0.001 or vpt-deep:num_prompts=10,50")
    parser.add_argument("--vary", action="append", metavar="[METHOD:]KEY=V1,V2",
                        help="ablation axis: tune and retrain each value on its own, e.g. num_prompts=1,5,10")
    parser.add_argument("--seeds", type=int, help="seeds of the final runs, 0..S-1 (3)")
    parser.add_argument("--select", choices=SELECT_RULES,
                        help="last-epoch: validation top-1 of the final epoch, as the paper (default); "
                             "best-epoch: the best epoch's")
    parser.add_argument("--out", help="sweep folder (sweeps/sweep)")
    parser.add_argument("--launcher", choices=LAUNCHERS, help="local (default): this process or --workers; "
                        "ray: Ray Tune trials")
    parser.add_argument("--workers", type=int, help="local worker processes (1: this process)")
    parser.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    parser.add_argument("--cpus-per-trial", type=float, help="Ray resources of one trial (1)")
    parser.add_argument("--gpus-per-trial", type=float, help="Ray GPUs of one trial (0)")
    parser.add_argument("--seed", type=int, help="seed of the tune trials (0)")
    add_training_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary table")
    parser.set_defaults(func=run)


def sweep_values(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep mapping: the YAML file, then the flags given."""
    values = read_yaml(args.config) if "config" in args else {}
    given = vars(args)
    for key in ("data", "out", "grid_name", "seeds", "select", "launcher", "workers", "ray_address",
                "cpus_per_trial", "gpus_per_trial", "tasks", "methods"):
        if key in given:
            values[key] = given[key]
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"quiet", "out"}
    values.update({key: value for key, value in given.items() if key in fields})
    values.update(method_options(args))
    methods = values.get("methods") or {}
    if not isinstance(methods, dict):
        names = [n.strip() for item in _as_list(methods) for n in str(item).split(",") if n.strip()]
        methods = {name: {} for name in names}
    for flag in ("grid", "vary"):
        for item in given.get(flag, []):
            method, key, parsed = parse_grid_item(item)
            if method is None:
                values[flag] = {**(values.get(flag) or {}), key: parsed}
            elif method not in methods:
                raise VptuneError(f"--{flag} {item} names method '{method}', which the sweep does not run "
                                  f"({', '.join(methods)})")
            else:
                own = methods[method] or {}
                own[flag] = {**(own.get(flag) or {}), key: parsed}
                methods[method] = own
    values["methods"] = methods
    if "tasks" in given:
        values["tasks"] = [t.strip() for item in given["tasks"] for t in item.split(",") if t.strip()]
    return values


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def run(args: argparse.Namespace) -> int:
    spec = build_spec(sweep_values(args))
    quiet = getattr(args, "quiet", False)
    rows = run_sweep(spec, show=not quiet)
    if not quiet:
        print(format_summary(summary(rows)))
        print(json.dumps({"results": f"{spec.out}/results.jsonl", "rows": len(rows)}))
    return 0
