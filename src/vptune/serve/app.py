"""The HTTP service: routes, error answers and the pieces they share.

`create_app(config)` returns a FastAPI app; `vptune serve` runs it with uvicorn. Predictions
go through one Batcher (dynamic batching across tasks) into one TaskRegistry (a MultiTask
that follows the tasks folder). Every error is answered as `{"error": ..., "type": ...}`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any

import torch
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..errors import VptuneError
from .batching import Batcher
from .config import ServeConfig
from .decode import decode_images
from .images import prepare_image
from .docs_page import add_offline_docs, offline_docs_available
from .http_errors import AdminDisabledError, ImageError, NotReadyError, ServeError, UnauthorizedError, UnknownTaskError
from .limits import BodyLimit
from .metrics import UNKNOWN_TASK, Metrics
from .page import PAGE
from .registry import MultiTaskFactory, TaskRegistry, default_multitask
from .schemas import (
    BatchRequest, BatchResponse, ErrorBody, FailedFile, Prediction, PredictQuery, PredictResponse, Status, TaskDetail,
    TaskList, TaskSummary,
)

log = logging.getLogger(__name__)

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": "the image file: a multipart form with a file field `image`, or the raw bytes as the body",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}},
                           "required": ["image"]}
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
TASK_FILE_BODY = {
    "requestBody": {
        "required": True,
        "description": "the per-task `.safetensors` file as the raw body (read with safetensors only)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers of a route."""
    return {code: {"model": ErrorBody} for code in codes}


def create_app(
    config: ServeConfig,
    make_multitask: MultiTaskFactory = default_multitask,
    on_failed_start: Callable[[str], None] | None = None,
    on_tasks: Callable[[list[str]], Awaitable[None]] | None = None,
    wait_for_start: bool = False,
) -> FastAPI:
    """The service for `config`; the backbone and tasks load in the background once it starts.

    A start that cannot succeed (the backbone does not load, no file of the folder loads) is
    answered on /readyz with its reason and told to `on_failed_start` (`vptune serve` exits).
    `on_tasks` is awaited with the task names of each prediction request before they are loaded
    (a Ray Serve replica registers them for routing). With `wait_for_start` the app's startup
    returns only once that loading is over, loaded or failed (Ray Serve sends a replica requests
    only after its startup).
    """
    registry = TaskRegistry(config.tasks_dir, config.backbone, config.device, make_multitask, config.tier_limits,
                            config.precision, config.hub_refresh_seconds)
    # Images are decoded and prepared here, a bounded number at a time, while the batching thread runs the model.
    decoding = ThreadPoolExecutor(max_workers=config.decode_threads, thread_name_prefix="vptune-decode")

    async def prepared(datas: list[bytes], tasks: list[str], names: list[str] | None = None) -> list[Any]:
        """The model inputs of one request's images, each prepared as its (acquired) task's evaluation did."""
        def work() -> list[Any]:
            images = decode_images(datas, config.max_pixels, names)
            return [prepare_image(image, registry.input_spec(task)) for image, task in zip(images, tasks)]

        return await asyncio.get_running_loop().run_in_executor(decoding, work)
    registry.on_failed_start = on_failed_start
    metrics = Metrics()
    batcher = Batcher(
        registry.predict, max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1000,
        max_queue=config.max_queue, on_batch=metrics.observe_batch,
    )
    metrics.queue_depth.set_function(lambda: batcher.depth)
    registry.on_change = metrics.tasks_loaded.set
    registry.on_load_error = lambda name: metrics.load_errors.inc()
    registry.on_load = metrics.observe_load
    registry.on_evict = metrics.task_evictions.inc
    metrics.task_memory.set_function(lambda: registry.tier.memory)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if config.precision == "bf16":
            from ..engine.runinfo import warn_if_slow_bf16  # as training warns

            warn_if_slow_bf16(torch.device(config.device), config.precision)
        registry.start(config.watch_seconds)
        batcher.start()
        while wait_for_start and not registry.started:
            await asyncio.sleep(0.05)
        yield
        await batcher.stop()
        decoding.shutdown(wait=False, cancel_futures=True)
        await run_in_threadpool(registry.stop)

    app = FastAPI(
        title="vptune serve",
        version=__version__,
        description="Many tuned tasks on one frozen backbone; images of different tasks are batched together.",
        lifespan=lifespan,
        docs_url=None if offline_docs_available() else "/docs",
    )
    if app.docs_url is None:
        add_offline_docs(app)
    app.state.registry, app.state.metrics, app.state.batcher = registry, metrics, batcher
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, limit_for=lambda scope: _body_limit(config, scope))
    app.add_middleware(RequestMetrics, metrics=metrics, routes=app.router.routes)

    def require_ready() -> None:
        if not registry.ready:
            raise NotReadyError(registry.not_ready_reason())

    def require_admin(authorization: str | None = Header(None, description="`Bearer <admin token>`")) -> None:
        if config.admin_token is None:
            raise AdminDisabledError("admin routes are off; start the service with --admin-token or VPTUNE_ADMIN_TOKEN")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), config.admin_token.encode()):
            raise UnauthorizedError("admin routes need the header 'Authorization: Bearer <admin token>'")

    def count_tasks(request: Request, names: list[str]) -> None:
        request.state.tasks = [name if registry.tier.state(name) else UNKNOWN_TASK for name in names]

    @asynccontextmanager
    async def acquired(names: list[str]):
        """The tasks `names`, loaded (waiting for their loads) and kept in memory while the block runs."""
        if on_tasks is not None:
            await on_tasks(names)
        await registry.tier.acquire(names)
        try:
            yield
        finally:
            registry.tier.release(names)

    @app.get("/", response_class=HTMLResponse, summary="A page that lists the tasks and classifies a dropped image")
    async def page() -> str:
        return PAGE

    @app.get("/healthz", response_model=Status, summary="Liveness: the process answers")
    async def healthz() -> Status:
        return Status(status="ok")

    @app.get("/readyz", response_model=Status, responses=errors(503),
             summary="Readiness: 200 once the backbone and the folder's tasks are loaded, 503 before")
    async def readyz() -> Status:
        require_ready()
        known = len(registry.tier.states()) - len(registry.failed())
        return Status(status="ready", detail=f"{len(registry.tasks())} tasks loaded, {known} known")

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics in text format")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/tasks", response_model=TaskList, summary="The tasks being served, each with its state")
    async def list_tasks() -> TaskList:
        errors, loaded = registry.errors(), {info.name: info for info in registry.tasks()}
        listed = []
        for name, state in registry.tier.states().items():
            if state == "failed":
                continue
            info = loaded.get(name) if state == "loaded" else None
            listed.append(_summary(info, errors.get(name)) if info else TaskSummary(name=name, state=state))
        return TaskList(tasks=listed,
                        failed=[FailedFile(name=name, error=error) for name, error in registry.failed().items()])

    @app.get("/v1/tasks/{task}", response_model=TaskDetail, responses=errors(404, 422),
             summary="One task and its classes (loading it if needed)")
    async def get_task(task: str) -> TaskDetail:
        require_ready()
        async with acquired([task]):
            info = registry.get(task)
        summary = _summary(info, registry.errors().get(task))
        return TaskDetail(**summary.model_dump(), class_names=list(info.class_names))

    @app.post(
        "/v1/tasks/{task}/predict", response_model=PredictResponse, responses=errors(400, 404, 413, 422, 429, 503),
        openapi_extra=IMAGE_BODY, summary="Top-k classes of one image for one task",
    )
    async def predict(task: str, request: Request, query: Annotated[PredictQuery, Query()]) -> PredictResponse:
        top_k = query.top_k
        count_tasks(request, [task])
        require_ready()
        _require_known(registry, [task])
        data = await _image_bytes(request)
        async with acquired([task]):
            (image,) = await prepared([data], [task])
            ranked = await batcher.submit(image, task, top_k)
        return PredictResponse(task=task, predictions=[_prediction(p) for p in ranked])

    @app.post(
        "/v1/predict", response_model=BatchResponse, responses=errors(400, 404, 413, 422, 429, 503),
        summary="Several images, each for its own task (JSON with base64 images)",
    )
    async def predict_many(body: BatchRequest, request: Request) -> BatchResponse:
        count_tasks(request, [item.task for item in body.items])
        require_ready()
        tasks = [item.task for item in body.items]
        _require_known(registry, tasks)
        datas = [_base64(item.image, index) for index, item in enumerate(body.items)]
        names = [f"items[{index}].image" for index in range(len(datas))]
        async with acquired(tasks):
            images = await prepared(datas, tasks, names)
            ranked = await asyncio.gather(*(batcher.submit(image, task, body.top_k) for image, task in zip(images, tasks)))
        return BatchResponse(results=[
            PredictResponse(task=item.task, predictions=[_prediction(p) for p in r]) for item, r in zip(body.items, ranked)
        ])

    @app.put(
        "/v1/tasks/{task}", response_model=TaskSummary, responses=errors(401, 403, 413, 422, 503),
        dependencies=[Depends(require_admin)], openapi_extra=TASK_FILE_BODY,
        summary="Admin: add or replace a task from an uploaded per-task file",
    )
    async def put_task(task: str, request: Request) -> TaskSummary:
        data = await request.body()
        return _summary(await run_in_threadpool(registry.put, task, data))

    @app.delete(
        "/v1/tasks/{task}", response_model=Status, responses=errors(401, 403, 404),
        dependencies=[Depends(require_admin)], summary="Admin: stop serving a task and delete its file",
    )
    async def delete_task(task: str) -> Status:
        await run_in_threadpool(registry.delete, task)
        return Status(status="deleted", detail=task)

    return app


class RequestMetrics:
    """ASGI middleware: counts every request by route template and status, and the images by task."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            tasks = scope.get("state", {}).get("tasks", [])
            self.metrics.observe_request(
                self._route(scope), scope["method"], status, time.perf_counter() - started, tasks
            )

    def _route(self, scope: Scope) -> str:
        for route in self.routes:
            if route.matches(scope)[0] == Match.FULL:
                return route.path
        return "unmatched"


def _body_limit(config: ServeConfig, scope: Scope) -> int:
    is_upload = scope["method"] == "PUT" and scope["path"].startswith("/v1/tasks/")
    return config.max_upload_bytes if is_upload else config.max_body_bytes


async def _image_bytes(request: Request) -> bytes:
    """The image of a request: multipart field `image`, or else the raw body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("image")
            if not isinstance(upload, UploadFile):
                raise ImageError("the multipart body has no file field 'image'")
            return await upload.read()
    return await request.body()


def _base64(text: str, index: int) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageError(f"items[{index}].image is not valid base64 ({err})") from err


def _require_known(registry: TaskRegistry, names: list[str]) -> None:
    """UnknownTaskError (404) for the first name without a file, before anything is decoded or loaded."""
    for name in names:
        if registry.tier.state(name) is None:
            raise UnknownTaskError(f"task '{name}' is not served; GET /v1/tasks lists the tasks")


def _summary(info: Any, error: str | None = None) -> TaskSummary:
    return TaskSummary(name=info.name, method=info.method, classes=len(info.class_names), bytes=info.bytes,
                       error=error)


def _prediction(p: Any) -> Prediction:
    return Prediction(label=p.label, index=p.index, score=float(p.score))


# ------------------------------------------------------------ errors as one-line JSON
def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split()), "type": kind}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if exc.status_code in (429, 503):
            headers = {"Retry-After": "1"}
        return _error(exc.status_code, str(exc), type(exc).__name__, headers)

    @app.exception_handler(VptuneError)
    async def vptune_error(request: Request, exc: VptuneError) -> JSONResponse:
        return _error(422, str(exc), type(exc).__name__)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = type(exc).__name__ if type(exc) is not HTTPException else f"HTTP{exc.status_code}"
        return _error(exc.status_code, str(exc.detail), kind, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg')}" if where else str(first.get("msg")), "RequestValidationError")

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client left before its body arrived: nobody reads an answer, and nothing went wrong here.
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the service goes on", "InternalError")
