"""The service as a Ray Serve deployment: replicas of the same FastAPI app, each with its own batching and tier.

Each replica builds its own app (`create_app`) when it starts, so it has its own batching
thread, loader and tier of tasks; its startup ends once its backbone and first tasks are
loaded, so Ray Serve routes requests to it (and `serve.run` returns) only then. Requests are
routed by Ray Serve's model multiplexing: a client that sends the header
`serve_multiplexed_model_id: TASK` is routed preferably to a replica that already holds TASK,
because each replica registers the tasks it is asked for through a `serve.multiplexed` loader
(which loads the task into that replica's tier). Without the header, requests go to any
replica and are answered all the same.

Ray is imported only here, so plain `vptune serve` needs none of it.
"""

from __future__ import annotations

from typing import Any

from ..errors import VptuneError
from .config import ServeConfig

# How many task ids a replica registers with Ray's router when its tier is unbounded.
UNBOUNDED_TASKS = 1_000_000


def ray_serve() -> Any:
    """The `ray.serve` module; VptuneError naming the extra when it is missing."""
    try:
        from ray import serve
    except ImportError as err:
        raise VptuneError(f"vptune serve --ray needs the 'ray' extra ({err.name or 'ray'} is missing): "
                          "pip install 'vptune[ray]'") from err
    return serve


def parse_autoscale(text: str) -> tuple[int, int]:
    """`MIN:MAX` as two whole numbers with 1 <= MIN <= MAX; VptuneError otherwise."""
    low, sep, high = text.partition(":")
    if not (sep and low.strip().isdigit() and high.strip().isdigit()) or not 1 <= int(low) <= int(high):
        raise VptuneError(f"--autoscale '{text}' must be MIN:MAX, two whole numbers with 1 <= MIN <= MAX, e.g. 1:4")
    return int(low), int(high)


def deployment(config: ServeConfig, *, replicas: int = 1, autoscale: tuple[int, int] | None = None,
               num_cpus: float = 1.0) -> Any:
    """A Ray Serve application of `config`'s service: `replicas` replicas, or `autoscale` (MIN, MAX)
    of them scaled on ongoing requests. Each replica asks Ray for `num_cpus` CPUs."""
    serve = ray_serve()
    per_replica = config.max_loaded_tasks or UNBOUNDED_TASKS

    class VptuneReplica:
        """One replica: the app, and the multiplexing loader that tells Ray which tasks it holds."""

        def __init__(self, config: ServeConfig) -> None:
            self.config = config
            self.service: Any = None

        def __serve_build_asgi_app__(self) -> Any:
            from .app import create_app

            self.service = create_app(self.config, on_tasks=self.route_hint, wait_for_start=True)
            return self.service

        async def route_hint(self, names: list[str]) -> None:
            """Register the request's `serve_multiplexed_model_id` (a task name) with Ray's router."""
            task = serve.get_multiplexed_model_id()
            if task and task in names:
                await self.hold(task)

        @serve.multiplexed(max_num_models_per_replica=per_replica)
        async def hold(self, task: str) -> str:
            tier = self.service.state.registry.tier
            await tier.acquire([task])  # loads it into this replica's tier
            tier.release([task])
            return task

    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": num_cpus}, "name": "vptune"}
    if autoscale is not None:
        options["autoscaling_config"] = {"min_replicas": autoscale[0], "max_replicas": autoscale[1],
                                         "target_ongoing_requests": max(1, config.max_batch)}
    else:
        options["num_replicas"] = replicas
    return serve.deployment(serve.ingress()(VptuneReplica), **options).bind(config)
