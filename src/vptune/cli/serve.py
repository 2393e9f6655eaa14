"""`vptune serve`: an HTTP service for a folder of per-task files on one backbone."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import VptuneError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a folder of per-task files over HTTP, batching requests across tasks"
    )
    parser.add_argument("--tasks", required=True, metavar="DIR",
                        help="folder of <task>.safetensors files; files added or deleted there are picked up")
    parser.add_argument("--backbone", default=None, metavar="ID",
                        help="backbone id (default: the one the first task file records)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (8000)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (cpu)")
    parser.add_argument("--max-batch", type=int, default=32, help="most images per model call (32)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0,
                        help="how long the first request of a batch waits for others (5)")
    parser.add_argument("--max-queue", type=int, default=256,
                        help="images waiting for a batch before new requests get 429 (256)")
    parser.add_argument("--watch-seconds", type=float, default=2.0, help="how often the tasks folder is polled (2)")
    parser.add_argument("--max-body-mb", type=float, default=20.0, help="largest prediction request body (20)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest uploaded task file (200)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000,
                        help="largest image, in pixels, that is decoded (40000000)")
    parser.add_argument("--admin-token", default=None,
                        help="turns on PUT/DELETE /v1/tasks/{task} for 'Authorization: Bearer TOKEN' "
                             "(default: env VPTUNE_ADMIN_TOKEN; unset: admin routes off)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="uvicorn's log level (info)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..serve.app import create_app
        from ..serve.config import ServeConfig, admin_token_from_env
    except ImportError as err:
        raise VptuneError(f"serving needs the 'serve' extra ({err.name} is missing): pip install 'vptune[serve]'") from err
    if not 0 < args.port < 65536:
        raise VptuneError(f"--port must be between 1 and 65535, got {args.port}")
    config = ServeConfig(
        tasks_dir=Path(args.tasks), backbone=args.backbone, device=args.device, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, watch_seconds=args.watch_seconds,
        max_body_mb=args.max_body_mb, max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
        admin_token=admin_token_from_env(args.admin_token),
    )
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level)
    return 0
