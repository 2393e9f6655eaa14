"""`vptune serve`: an HTTP service for a folder of per-task files on one backbone."""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import sys
import threading
from pathlib import Path

from ..errors import VptuneError

# After SIGTERM or Ctrl-C, requests still running get this long to finish before they are cut.
GRACEFUL_SECONDS = 3
RAY_APP = "vptune"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a folder (or Hub repository) of per-task files over HTTP, batching requests across tasks",
        description="Every setting is checked, and the port bound, before anything loads; a start that cannot "
                    "succeed (the backbone or every task file fails to load) ends with one error line.",
    )
    parser.add_argument("--tasks", required=True, metavar="DIR",
                        help="folder of <task>.safetensors files (files added, replaced or deleted there are "
                             "picked up), or hf://OWNER/NAME[@REVISION]: the .safetensors files of a Hub model "
                             "repository, read-only")
    parser.add_argument("--backbone", default=None, metavar="ID",
                        help="backbone id: a timm name, a checkpoint file or dinov2-s14-imgfocus "
                             "(default: the one the first task file records)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port, in [1, 65535], not in use (8000)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N, present on this machine (cpu)")
    parser.add_argument("--max-batch", type=int, default=32, help="most images per model call, in [1, 4096] (32)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0,
                        help="how long the first request of a batch waits for others, in [0, 10000] (5)")
    parser.add_argument("--max-queue", type=int, default=256,
                        help="images waiting for a batch before new requests get 429, in [1, 1000000] (256)")
    parser.add_argument("--watch-seconds", type=float, default=2.0,
                        help="how often the tasks folder is polled, in [0.1, 86400] (2)")
    parser.add_argument("--hub-refresh-seconds", type=float, default=300.0,
                        help="with --tasks hf://: how often the repository is listed again, so task files added, "
                             "replaced or deleted there are picked up; 0 lists it once, at start; in [0, 86400] "
                             "(300)")
    parser.add_argument("--max-body-mb", type=float, default=20.0,
                        help="largest prediction request body, in [0.001, 1024] (20)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0,
                        help="largest uploaded task file, in [0.001, 16384] (200)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000,
                        help="most pixels decoded for one request, all its images together, checked from the "
                             "headers before decoding, in [1, 1000000000] (40000000)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="bf16 runs each batch under bf16 autocast (on a CPU without native bf16 it is "
                             "emulated and slower; a warning says so) (fp32)")
    parser.add_argument("--decode-threads", type=int, default=2, metavar="N",
                        help="threads that decode and resize images while the previous batch runs, in [1, 256] (2)")
    parser.add_argument("--max-loaded-tasks", type=int, default=None, metavar="N",
                        help="most tasks in memory, in [1, 10000000]; with this or --max-task-memory-mb, tasks "
                             "load on their first request and the least recently used are evicted (default: no "
                             "bound, every task loaded at start)")
    parser.add_argument("--max-task-memory-mb", type=float, default=None, metavar="MB",
                        help="most memory the loaded tasks' own tensors take (the shared backbone not counted), "
                             "in [0.001, 16777216] (default: no bound)")
    parser.add_argument("--admin-token", default=None,
                        help="turns on PUT/DELETE /v1/tasks/{task} for 'Authorization: Bearer TOKEN' "
                             "(default: env VPTUNE_ADMIN_TOKEN; unset: admin routes off)")
    parser.add_argument("--ray", action="store_true",
                        help="deploy the service on Ray Serve (the 'ray' extra): replicas, each with its own "
                             "batching and tier; clients send 'serve_multiplexed_model_id: TASK' to be routed to a "
                             "replica that holds the task")
    parser.add_argument("--replicas", type=int, default=None, metavar="N",
                        help="with --ray: replicas, in [1, 1024] (1)")
    parser.add_argument("--autoscale", default=None, metavar="MIN:MAX",
                        help="with --ray, instead of --replicas: between MIN and MAX replicas, scaled on ongoing requests")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="with --ray: the Ray cluster to join (default: a local Ray instance, started and "
                             "stopped with the service)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="uvicorn's log level (info)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..serve.app import create_app
        from ..serve.config import ServeConfig, admin_token_from_env, check_number
        from ..serve.registry import check_task_files
        from ..serve.sources import is_hub
    except ImportError as err:
        raise VptuneError(f"serving needs the 'serve' extra ({err.name} is missing): pip install 'vptune[serve]'") from err
    from ..backbones import check_backbone_id

    config = ServeConfig(
        tasks_dir=args.tasks if is_hub(args.tasks) else Path(args.tasks), backbone=args.backbone, device=args.device, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, watch_seconds=args.watch_seconds,
        hub_refresh_seconds=args.hub_refresh_seconds,
        max_body_mb=args.max_body_mb, max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
        max_loaded_tasks=args.max_loaded_tasks, max_task_memory_mb=args.max_task_memory_mb,
        precision=args.precision, decode_threads=args.decode_threads,
        admin_token=admin_token_from_env(args.admin_token),
    )
    if args.backbone is not None:
        check_backbone_id(args.backbone)
    if not is_hub(config.tasks_dir):
        check_task_files(config.tasks_dir)
    check_number("port", args.port, int, 1, 65535)
    if args.ray:
        return run_on_ray(args, config)
    for flag in ("replicas", "autoscale", "ray_address"):
        if getattr(args, flag) is not None:
            raise VptuneError(f"--{flag.replace('_', '-')} goes with --ray; add --ray or leave it out")
    listening = bind(args.host, args.port)
    failures: list[str] = []

    def failed_start(reason: str) -> None:
        failures.append(reason)
        server.should_exit = True

    app = create_app(config, on_failed_start=failed_start)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:
            """SIGTERM or Ctrl-C: a graceful stop that ends with exit status 0 (a second Ctrl-C forces it)."""
            app.state.batcher.stop_soon()  # requests waiting for a batch are answered now, not cut off later
            self.force_exit = self.should_exit and sig == signal.SIGINT
            self.should_exit = True

    server = Server(uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=GRACEFUL_SECONDS))
    try:
        server.run(sockets=[listening])
    finally:
        listening.close()
    if failures:
        raise VptuneError(f"the service could not start: {failures[0]}")
    return 0


def run_on_ray(args: argparse.Namespace, config) -> int:
    """Deploy on Ray Serve and serve until SIGTERM or Ctrl-C, then take the deployment down."""
    from ..serve.config import check_number
    from ..serve.ray_deploy import deployment, parse_autoscale, ray_serve

    if args.replicas is not None and args.autoscale is not None:
        raise VptuneError("--replicas and --autoscale exclude each other; give one")
    autoscale = parse_autoscale(args.autoscale) if args.autoscale is not None else None
    replicas = 1 if args.replicas is None else args.replicas
    check_number("replicas", replicas, int, 1, 1024)
    serve = ray_serve()
    import ray

    if args.ray_address is None:
        bind(args.host, args.port).close()  # the port is free before a local Ray instance starts
    ray.init(address=args.ray_address, include_dashboard=False, logging_level=args.log_level.upper())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs handlers of its own
        signal.signal(sig, lambda *_: stop.set())
    try:
        print(f"ray: {ray.get_runtime_context().gcs_address}", file=sys.stderr, flush=True)
        try:
            serve.start(http_options={"host": args.host, "port": args.port})
            serve.run(deployment(config, replicas=replicas, autoscale=autoscale), name=RAY_APP, route_prefix="/")
        except (ray.exceptions.RayError, TimeoutError) as exc:  # e.g. the HTTP proxy not up within 60 s
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VptuneError(f"Ray Serve did not start on {args.host}:{args.port}: {reason}") from exc
        how = f"{autoscale[0]} to {autoscale[1]} replicas" if autoscale else f"{replicas} replica(s)"
        print(f"serving on http://{args.host}:{args.port} with {how} on Ray Serve", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        if args.ray_address is None:
            serve.shutdown()
            ray.shutdown()
        else:
            serve.delete(RAY_APP)
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port for the server to listen on; VptuneError when it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise VptuneError(f"--host '{host}' is not an address this machine can listen on ({exc}); "
                          "use 127.0.0.1 or 0.0.0.0") from exc
    listening = socket.socket(family, kind, proto)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
    except OSError as exc:
        listening.close()
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise VptuneError(f"cannot listen on {host}:{port}: {reason}; pick another --port or --host") from exc
    return listening
