"""Where a sweep's trials run: in this process, in a pool of worker processes, or on Ray Tune.

Every launcher takes the trials of one stage and hands each finished trial's record to
`on_record` in this process, as soon as it is known.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch

from .spec import SweepSpec
from .trials import RESULT, Trial, run_trial

OnRecord = Callable[[dict[str, Any]], None]


def launch(spec: SweepSpec, stage: str, trials: list[Trial], on_record: OnRecord) -> None:
    """Run `trials` as `spec` says (`launcher`, `workers`); trials with a kept record are not run again."""
    if spec.launcher == "ray":
        from .ray_launcher import run_on_ray

        run_on_ray(spec, stage, trials, on_record)  # all of them: the stage's experiment is named by its trials
        return
    pending = [trial for trial in trials if not (trial.run_dir / RESULT).is_file()]
    if spec.workers > 1:
        run_in_pool(pending, spec.workers, on_record)
    else:
        # One process keeps the frozen features of head-only trials across the whole stage.
        for trial in pending:
            on_record(run_trial(trial))


def run_in_pool(trials: list[Trial], workers: int, on_record: OnRecord) -> None:
    """Run trials in `workers` fresh (spawned) processes, sharing the CPU cores between them."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(run_trial, trial) for trial in trials]
        for future in as_completed(futures):
            on_record(future.result())
