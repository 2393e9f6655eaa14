"""Trials as Ray Tune trials: one grid-search experiment per sweep stage, restored when rerun.

The experiment of a stage is named by a hash of its trial ids, so the same command finds
and restores it (`Tuner.restore`), while a changed sweep starts a new one. Trials that
finished in any earlier attempt return their kept record at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ...errors import VptuneError
from .spec import SweepSpec
from .trials import Trial, run_trial

try:
    import ray
    from ray import tune
except ImportError:
    raise VptuneError("--launcher ray needs Ray: pip install 'vptune[ray]'") from None


def run_on_ray(spec: SweepSpec, stage: str, trials: list[Trial], on_record: Callable[[dict], None]) -> None:
    """Run `trials` on the Ray cluster at `spec.ray_address` (a local one when None)."""
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=spec.ray_address, include_dashboard=False, log_to_driver=False)
    try:
        storage = Path(spec.out) / "ray"
        name = f"{stage}-" + hashlib.sha256("".join(t.id for t in trials).encode()).hexdigest()[:12]
        trainable = tune.with_resources(_trainable, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
        _SINKS[name] = on_record
        if tune.Tuner.can_restore(str(storage / name)):
            # The restored run config brings its own _Records, which finds this process's sink by name.
            tuner = tune.Tuner.restore(str(storage / name), trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search([t.to_dict() for t in trials])},
                run_config=tune.RunConfig(storage_path=str(storage.absolute()), name=name, verbose=0,
                                          callbacks=[_Records(name)]),
            )
        try:
            results = tuner.fit()
        finally:
            del _SINKS[name]
        if results.errors:
            raise VptuneError(f"a Ray trial failed: {str(results.errors[0]).strip().splitlines()[-1]}")
    finally:
        if started_here:
            ray.shutdown()


def _trainable(config: dict[str, Any]) -> None:
    torch.set_num_threads(max(1, int(tune.get_context().get_trial_resources().required_resources.get("CPU", 1))))
    record = run_trial(Trial(**config["trial"]))
    tune.report({"record": json.dumps(record)})


# Where each running experiment's records go, by experiment name (driver side). Tune pickles
# its run config with the experiment, so callbacks hold the name, not the sink.
_SINKS: dict[str, Callable[[dict], None]] = {}


class _Records(tune.Callback):
    """Hands each reported record to the sweep as its trial finishes (driver side)."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        sink = _SINKS.get(self.experiment)
        if sink is not None:
            sink(json.loads(result["record"]))
