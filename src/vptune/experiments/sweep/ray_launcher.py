"""Trials as Ray Tune trials: one grid-search experiment per sweep stage, restored when rerun.

The experiment of a stage is named by a hash of its trial ids, so the same command finds
and restores it (`Tuner.restore`), while a changed sweep starts a new one. Trials that
finished in any earlier attempt return their kept record at once.
"""

from __future__ import annotations

import hashlib
import json
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


def run_on_ray(spec: SweepSpec, stage: str, trials: list[Trial], on_record) -> None:
    """Run `trials` on the Ray cluster at `spec.ray_address` (a local one when None)."""
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=spec.ray_address, include_dashboard=False, log_to_driver=False)
    try:
        storage = Path(spec.out) / "ray"
        name = f"{stage}-" + hashlib.sha256("".join(t.id for t in trials).encode()).hexdigest()[:12]
        trainable = tune.with_resources(_trainable, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
        callbacks = [_Records(on_record)]
        if tune.Tuner.can_restore(str(storage / name)):
            tuner = tune.Tuner.restore(str(storage / name), trainable, resume_unfinished=True, resume_errored=True)
            # A restored experiment keeps its own run config; the callbacks are this process's.
            tuner._local_tuner.get_run_config().callbacks = callbacks
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search([t.to_dict() for t in trials])},
                run_config=tune.RunConfig(storage_path=str(storage.absolute()), name=name, verbose=0,
                                          callbacks=callbacks),
            )
        results = tuner.fit()
        if results.errors:
            raise VptuneError(f"a Ray trial failed: {str(results.errors[0]).strip().splitlines()[-1]}")
    finally:
        if started_here:
            ray.shutdown()


def _trainable(config: dict[str, Any]) -> None:
    torch.set_num_threads(max(1, int(tune.get_context().get_trial_resources().required_resources.get("CPU", 1))))
    record = run_trial(Trial(**config["trial"]))
    tune.report({"record": json.dumps(record)})


class _Records(tune.Callback):
    """Hands each reported record to the sweep as its trial finishes (driver side)."""

    def __init__(self, on_record) -> None:
        self.on_record = on_record

    def __reduce__(self):
        # Tune pickles its run config with the experiment; the sink belongs to this process only.
        return (_Records, (None,))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self.on_record is not None:
            self.on_record(json.loads(result["record"]))
