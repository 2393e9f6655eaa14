"""The HTTP service against each task's own model: answers, batching, bad input, hot reload, admin."""

from __future__ import annotations

import base64
import io
import logging
import socket
import shutil
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from serve_helpers import TASKS, Reference, ServerThread, build_task_files, copy_tasks, metric, png, wait_for
from vptune.serve.app import create_app
from vptune.serve.config import ServeConfig

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_task_files(tmp_path_factory.mktemp("serve-files"))


class Recorded(logging.Handler):
    """The server's log records that carry a traceback or an error."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


@pytest.fixture(scope="module")
def served(files, tmp_path_factory):
    """One real server for the module: the three tasks, admin on, small limits, a fast folder watch."""
    folder = copy_tasks(files, tmp_path_factory.mktemp("serve-tasks") / "tasks")
    config = ServeConfig(
        tasks_dir=folder, max_batch=16, max_wait_ms=20, max_queue=64, watch_seconds=0.2,
        max_body_mb=1, max_upload_mb=2, max_pixels=1_000_000, admin_token=TOKEN,
    )
    server = ServerThread(create_app(config)).start()
    yield server.url, folder
    server.stop()


@pytest.fixture(scope="module")
def server_log(served):
    """Tracebacks and errors the module's server logs (uvicorn's and the app's), recorded from now on."""
    recorded = Recorded()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "vptune")]
    for logger in loggers:
        logger.addHandler(recorded)
    yield recorded.records
    for logger in loggers:
        logger.removeHandler(recorded)


@pytest.fixture(scope="module")
def client(served):
    with httpx.Client(base_url=served[0], timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def reference():
    return Reference()


def predict(client: httpx.Client, task: str, image: bytes, *, raw: bool = False, top_k: int = 5) -> httpx.Response:
    url = f"/v1/tasks/{task}/predict?top_k={top_k}"
    if raw:
        return client.post(url, content=image, headers={"content-type": "application/octet-stream"})
    return client.post(url, files={"image": ("image.png", image, "image/png")})


def assert_error(response: httpx.Response, status: int | tuple[int, ...], kind: str | None = None) -> dict:
    """A 4xx answered as one-line JSON {"error", "type"}."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, response.text
    body = response.json()
    assert set(body) == {"error", "type"} and "\n" not in body["error"] and body["error"]
    if kind:
        assert body["type"] == kind
    return body


def admin(client: httpx.Client, method: str, task: str, data: bytes | None = None, token: str | None = TOKEN):
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return client.request(method, f"/v1/tasks/{task}", content=data, headers=headers)


def test_lists_tasks_with_method_classes_and_bytes(client, served):
    body = client.get("/v1/tasks").json()
    folder = served[1]
    assert {t["name"]: (t["method"], t["classes"], t["bytes"]) for t in body["tasks"]} == {
        name: (method, classes, (folder / f"{name}.safetensors").stat().st_size)
        for name, (method, classes, _) in TASKS.items()
    }
    detail = client.get("/v1/tasks/deep2").json()
    assert detail["class_names"] == [f"deep2-class{i}" for i in range(7)]
    assert_error(client.get("/v1/tasks/nope"), 404, "UnknownTaskError")


def test_concurrent_mixed_tasks_answer_like_each_tasks_own_model(client, files, reference):
    jobs = [(name, png(seed), seed % 2 == 0) for seed, name in enumerate(list(TASKS) * 8)]
    before = metric(client, "vptune_batch_size_count")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: predict(client, job[0], job[1], raw=job[2]), jobs))
    for (name, image, _), answer in zip(jobs, answers):
        assert answer.status_code == 200, answer.text
        assert answer.json()["task"] == name
        reference.check(files.folder / f"{name}.safetensors", image, answer.json())
    batches = metric(client, "vptune_batch_size_count") - before
    assert 0 < batches < len(jobs)  # some requests shared a model call


def test_top_k_is_capped_by_the_classes(client, files, reference):
    answer = predict(client, "lin", png(99), top_k=50).json()
    assert len(answer["predictions"]) == 6
    reference.check(files.folder / "lin.safetensors", png(99), answer, top_k=6)


def test_batch_route_takes_json_with_base64_images_of_several_tasks(client, files, reference):
    items = [(name, png(100 + i)) for i, name in enumerate(["lin", "deep5", "deep2", "deep5"])]
    body = {"items": [{"task": t, "image": base64.b64encode(b).decode()} for t, b in items], "top_k": 3}
    answer = client.post("/v1/predict", json=body)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    for (name, image), result in zip(items, results):
        assert result["task"] == name
        reference.check(files.folder / f"{name}.safetensors", image, result, top_k=3)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but holds almost no data: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def flat_png(size: tuple[int, int]) -> bytes:
    """A one-colour PNG: many pixels in few bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 120, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


ITEM = {"task": "lin", "image": base64.b64encode(png(1)).decode()}
TINY_ITEM = {"task": "lin", "image": base64.b64encode(flat_png((2, 2))).decode()}
# 600 x 600 = 360,000 pixels: one is under the module server's 1,000,000, three together are over.
BIG_ITEM = {"task": "lin", "image": base64.b64encode(flat_png((600, 600))).decode()}

BAD_REQUESTS = {
    "not an image": (lambda c: predict(c, "deep5", b"hello, not an image"), 422, "ImageError"),
    "empty body": (lambda c: predict(c, "deep5", b"", raw=True), 422, "ImageError"),
    "truncated image": (lambda c: predict(c, "deep5", png(5)[:200]), 422, "ImageError"),
    "over the pixel limit": (lambda c: predict(c, "deep5", _png_header_only(2000, 2000)), 413, "ImageTooLargeError"),
    "decompression bomb": (lambda c: predict(c, "deep5", _png_header_only(30000, 30000), raw=True), 413, None),
    "body over the size limit": (lambda c: predict(c, "deep5", b"\0" * (2**20 + 10), raw=True), 413, "BodyTooLarge"),
    "unknown task": (lambda c: predict(c, "deep9", png(1)), 404, "UnknownTaskError"),
    "top_k zero": (lambda c: predict(c, "deep5", png(1), top_k=0), 422, "RequestValidationError"),
    "top_k not a number": (lambda c: c.post("/v1/tasks/deep5/predict?top_k=x", content=png(1)), 422, None),
    "multipart without image": (
        lambda c: c.post("/v1/tasks/deep5/predict", files={"picture": ("a.png", png(1), "image/png")}), 422, None),
    "batch not JSON": (
        lambda c: c.post("/v1/predict", content=b"{items", headers={"content-type": "application/json"}), 422, None),
    "batch without items": (lambda c: c.post("/v1/predict", json={"top_k": 2}), 422, "RequestValidationError"),
    "batch bad base64": (lambda c: c.post("/v1/predict", json={"items": [{"task": "lin", "image": "@@"}]}), 422, None),
    "batch unknown task": (
        lambda c: c.post("/v1/predict", json={"items": [{"task": "x", "image": base64.b64encode(png(1)).decode()}]}),
        404, "UnknownTaskError"),
    "unknown route": (lambda c: c.get("/v2/nothing"), 404, None),
    "wrong method": (lambda c: c.delete("/v1/predict"), 405, None),
    # JSON fields take their own type only, and no others
    "batch top_k true": (lambda c: c.post("/v1/predict", json={"items": [ITEM], "top_k": True}), 422,
                         "RequestValidationError"),
    "batch top_k as text": (lambda c: c.post("/v1/predict", json={"items": [ITEM], "top_k": "5"}), 422, None),
    "batch top_k zero": (lambda c: c.post("/v1/predict", json={"items": [ITEM], "top_k": 0}), 422, None),
    "batch unknown field": (lambda c: c.post("/v1/predict", json={"items": [ITEM], "topk": 3}), 422, None),
    "batch items not a list": (lambda c: c.post("/v1/predict", json={"items": ITEM}), 422, None),
    "batch no items": (lambda c: c.post("/v1/predict", json={"items": []}), 422, None),
    "batch too many items": (lambda c: c.post("/v1/predict", json={"items": [TINY_ITEM] * 257}), 422, None),
    "batch task not text": (lambda c: c.post("/v1/predict", json={"items": [{**ITEM, "task": 5}]}), 422, None),
    "batch image not text": (lambda c: c.post("/v1/predict", json={"items": [{**ITEM, "image": 5}]}), 422, None),
    "batch a list": (lambda c: c.post("/v1/predict", json=[ITEM]), 422, None),
    "batch over the pixel total": (lambda c: c.post("/v1/predict", json={"items": [BIG_ITEM] * 3}), 413,
                                   "ImageTooLargeError"),
    "top_k true": (lambda c: c.post("/v1/tasks/deep5/predict?top_k=true", content=png(1)), 422, None),
    "top_k over the limit": (lambda c: predict(c, "deep5", png(1), top_k=1001), 422, None),
    "get unknown task": (lambda c: c.get("/v1/tasks/deep9"), 404, "UnknownTaskError"),
    "put a bad task name": (lambda c: admin(c, "PUT", "bad name!", b"x"), (404, 422), None),
    "put an empty file": (lambda c: admin(c, "PUT", "deep5", b""), 422, "UploadError"),
    "delete unknown task": (lambda c: admin(c, "DELETE", "deep9"), 404, "UnknownTaskError"),
    "delete without the token": (lambda c: admin(c, "DELETE", "deep5", token=None), 401, "UnauthorizedError"),
    # query strings and bodies of the wrong shape
    "misspelt query parameter": (lambda c: c.post("/v1/tasks/deep5/predict?topk=3", content=png(1)), 422,
                                 "RequestValidationError"),
    "predict with GET": (lambda c: c.get("/v1/tasks/deep5/predict"), 405, None),
    "multipart with two images": (lambda c: c.post("/v1/tasks/deep5/predict", files=[
        ("image", ("a.png", png(1), "image/png")), ("image", ("b.png", png(2), "image/png"))]), 400, None),
    "multipart without a boundary": (lambda c: c.post("/v1/tasks/deep5/predict", content=png(1),
                                                      headers={"content-type": "multipart/form-data"}), 400, None),
    "image sent as JSON": (lambda c: c.post("/v1/tasks/deep5/predict", json={"image": ITEM["image"]}), 422,
                           "ImageError"),
    "batch JSON null": (lambda c: c.post("/v1/predict", content=b"null", headers={"content-type": "application/json"}),
                        422, "RequestValidationError"),
    "batch image as a data URL": (lambda c: c.post("/v1/predict", json={"items": [{**ITEM, "image": "data:image/png;"
                                                                                    "base64," + ITEM["image"]}]}),
                                  422, "ImageError"),
    "batch nested a million deep": (lambda c: c.post("/v1/predict", content=b"[" * 10**6 + b"]" * 10**6,
                                                     headers={"content-type": "application/json"}), (400, 413), None),
    "task name of dots": (lambda c: c.get("/v1/tasks/.."), 404, None),
    # admin routes
    "put with the wrong scheme": (lambda c: c.put("/v1/tasks/new", content=b"x",
                                                  headers={"authorization": f"Basic {TOKEN}"}), 401,
                                  "UnauthorizedError"),
    "put a hidden name": (lambda c: admin(c, "PUT", ".hidden", b"x"), 422, "UploadError"),
    "put an image": (lambda c: admin(c, "PUT", "new", png(1)), 422, "UploadError"),
    "put half a task file": (lambda c: admin(c, "PUT", "new", _safetensors()[:60]), 422, "UploadError"),
    "delete the collection": (lambda c: c.delete("/v1/tasks", headers={"authorization": f"Bearer {TOKEN}"}), 405,
                              None),
}


def _safetensors() -> bytes:
    import torch
    from safetensors.torch import save

    return save({"head.weight": torch.zeros(3, 4)})


def folder_state(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_the_table_of_bad_requests_has_ten_cases_or_more():
    assert len(BAD_REQUESTS) >= 10


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_and_the_service_goes_on(client, served, files, reference, server_log, case):
    send, status, kind = BAD_REQUESTS[case]
    before = folder_state(served[1])
    assert_error(send(client), status, kind)
    assert folder_state(served[1]) == before  # nothing written or removed
    assert not server_log, [record.getMessage() for record in server_log]  # no traceback in the server's log
    good = predict(client, "deep2", png(7))
    assert good.status_code == 200
    reference.check(files.folder / "deep2.safetensors", png(7), good.json())


def test_a_client_that_leaves_mid_body_costs_no_traceback(client, served, server_log):
    host, port = served[0].removeprefix("http://").split(":")
    labels = dict(route="/v1/tasks/{task}/predict", method="POST", status="400")
    before = metric(client, "vptune_http_requests_total", **labels)
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(b"POST /v1/tasks/deep5/predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\n"
                    b"content-length: 5000\r\n\r\n" + png(1)[:100])
    wait_for(lambda: metric(client, "vptune_http_requests_total", **labels) > before, message="the request to end")
    assert not server_log, [record.getMessage() for record in server_log]
    assert predict(client, "deep5", png(1)).status_code == 200


def test_metrics_count_requests_by_task_and_status(client):
    ok, unknown = ("deep5", "200"), ("_unknown", "404")
    before = [metric(client, "vptune_predictions_total", task=t, status=s) for t, s in (ok, unknown)]
    for seed in range(3):
        assert predict(client, "deep5", png(seed)).status_code == 200
    for _ in range(2):
        assert predict(client, "no-such-task", png(0)).status_code == 404
    after = [metric(client, "vptune_predictions_total", task=t, status=s) for t, s in (ok, unknown)]
    assert [a - b for a, b in zip(after, before)] == [3, 2]
    assert metric(client, "vptune_tasks_loaded") == len(TASKS)
    text = client.get("/metrics").text
    for name in ("vptune_request_seconds_bucket", "vptune_queue_seconds_bucket", "vptune_http_requests_total"):
        assert name in text


def test_health_ready_page_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").status_code == 200
    assert "vptune serve" in client.get("/").text
    spec = client.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            assert operation.get("summary"), (method, path)
            assert "200" in operation["responses"], (method, path)
    assert {"/v1/tasks", "/v1/tasks/{task}", "/v1/tasks/{task}/predict", "/v1/predict", "/healthz", "/readyz",
            "/metrics"} <= set(spec["paths"])


def _names(client: httpx.Client) -> set[str]:
    return {task["name"] for task in client.get("/v1/tasks").json()["tasks"]}


def test_tasks_dropped_into_replaced_in_and_deleted_from_the_folder(client, served, files, reference):
    folder = served[1]
    shutil.copy(files.spare, folder / "hot.safetensors")
    wait_for(lambda: "hot" in _names(client), message="the new file to be served")
    reference.check(files.spare, png(3), predict(client, "hot", png(3)).json())

    shutil.copy(files.folder / "lin.safetensors", folder / "hot.tmp")
    (folder / "hot.tmp").replace(folder / "hot.safetensors")  # atomic replace, as deploy tools do
    wait_for(lambda: client.get("/v1/tasks/hot").json().get("classes") == 6, message="the replaced file")
    reference.check(files.folder / "lin.safetensors", png(3), predict(client, "hot", png(3)).json())

    (folder / "hot.safetensors").unlink()
    wait_for(lambda: "hot" not in _names(client), message="the deleted file to go")
    assert_error(predict(client, "hot", png(3)), 404, "UnknownTaskError")


def test_a_broken_file_in_the_folder_is_skipped_and_listed(client, served):
    failures = metric(client, "vptune_task_load_errors_total")
    (served[1] / "broken.safetensors").write_bytes(b"not a safetensors file")
    try:
        wait_for(lambda: metric(client, "vptune_task_load_errors_total") == failures + 1, message="the failed load")
        assert "broken" not in _names(client)
        failed = {f["name"]: f["error"] for f in client.get("/v1/tasks").json()["failed"]}
        assert "not a safetensors file" in failed["broken"]
        assert predict(client, "deep5", png(1)).status_code == 200
    finally:
        (served[1] / "broken.safetensors").unlink()
    wait_for(lambda: not client.get("/v1/tasks").json()["failed"], message="the broken file to be forgotten")


def test_a_broken_file_replacing_a_served_one_keeps_the_old_task_and_says_why(client, served, files, reference):
    folder = served[1]
    shutil.copy(files.spare, folder / "kept.safetensors")
    wait_for(lambda: "kept" in _names(client), message="the new task")
    assert client.get("/v1/tasks/kept").json()["error"] is None
    (folder / "kept.tmp").write_bytes(b"not a safetensors file")
    (folder / "kept.tmp").replace(folder / "kept.safetensors")  # a deploy that shipped a broken file
    wait_for(lambda: client.get("/v1/tasks/kept").json().get("error"), message="the refused replacement")
    listed = {task["name"]: task for task in client.get("/v1/tasks").json()["tasks"]}
    assert "cannot be loaded" in listed["kept"]["error"] and "previous version keeps serving" in listed["kept"]["error"]
    assert listed["kept"]["classes"] == 4 and listed["kept"]["bytes"] == files.spare.stat().st_size
    reference.check(files.spare, png(9), predict(client, "kept", png(9)).json())
    shutil.copy(files.folder / "lin.safetensors", folder / "kept.tmp")
    (folder / "kept.tmp").replace(folder / "kept.safetensors")  # fixed: the new version serves, the error goes
    wait_for(lambda: client.get("/v1/tasks/kept").json().get("classes") == 6, message="the fixed file")
    assert client.get("/v1/tasks/kept").json()["error"] is None
    (folder / "kept.safetensors").unlink()
    wait_for(lambda: "kept" not in _names(client), message="the deleted file to go")


def test_admin_routes_need_the_token(client, files):
    data = files.spare.read_bytes()
    assert_error(admin(client, "PUT", "x", data, token=None), 401, "UnauthorizedError")
    assert_error(admin(client, "PUT", "x", data, token="wrong"), 401, "UnauthorizedError")
    assert_error(admin(client, "DELETE", "deep5", token="s3cret-tokeN"), 401)
    assert "x" not in _names(client) and "deep5" in _names(client)


def test_admin_put_replace_and_delete(client, served, files, reference):
    folder = served[1]
    answer = admin(client, "PUT", "uploaded", files.spare.read_bytes())
    assert answer.status_code == 200, answer.text
    assert answer.json()["classes"] == 4
    assert (folder / "uploaded.safetensors").read_bytes() == files.spare.read_bytes()
    reference.check(files.spare, png(8), predict(client, "uploaded", png(8)).json())

    assert admin(client, "PUT", "uploaded", (files.folder / "deep2.safetensors").read_bytes()).status_code == 200
    reference.check(files.folder / "deep2.safetensors", png(8), predict(client, "uploaded", png(8)).json())

    assert client.delete("/v1/tasks/uploaded", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert not (folder / "uploaded.safetensors").exists()
    assert_error(predict(client, "uploaded", png(8)), 404, "UnknownTaskError")
    assert_error(admin(client, "DELETE", "uploaded"), 404, "UnknownTaskError")


BAD_UPLOADS = {
    "not safetensors": (lambda f: b"\x80\x04pickle-ish bytes", 422),
    "torch pickle": (lambda f: _torch_pickle(), 422),
    "another backbone": (lambda f: f.other_backbone.read_bytes(), 422),
    "over the upload limit": (lambda f: b"\0" * (2 * 2**20 + 1), 413),
}


def _torch_pickle() -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"head.weight": torch.zeros(2, 2)}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_upload_is_refused_and_the_old_task_keeps_serving(client, files, reference, case):
    make, status = BAD_UPLOADS[case]
    assert_error(admin(client, "PUT", "deep5", make(files)), status)
    reference.check(files.folder / "deep5.safetensors", png(2), predict(client, "deep5", png(2)).json())
    assert_error(admin(client, "PUT", "../escape", files.spare.read_bytes()), (404, 422))


def test_admin_routes_are_off_without_a_token(files, tmp_path):
    from fastapi.testclient import TestClient

    app = create_app(ServeConfig(tasks_dir=tmp_path))
    client = TestClient(app)  # no lifespan: nothing loads, the routes still answer
    assert_error(client.put("/v1/tasks/x", content=files.spare.read_bytes()), 403, "AdminDisabledError")
    assert_error(client.delete("/v1/tasks/x", headers={"authorization": "Bearer "}), 403, "AdminDisabledError")
    assert_error(client.get("/readyz"), 503, "NotReadyError")
    assert client.get("/healthz").status_code == 200


def test_not_ready_until_the_first_task_brings_the_backbone(files, tmp_path):
    from fastapi.testclient import TestClient

    app = create_app(ServeConfig(tasks_dir=tmp_path, admin_token=TOKEN, watch_seconds=0.2))
    with TestClient(app) as client:
        assert_error(client.get("/readyz"), 503, "NotReadyError")
        wait_for(lambda: "holds no <task>.safetensors file" in client.get("/readyz").json()["error"],
                 message="the reason: an empty folder")
        assert_error(client.post("/v1/tasks/deep5/predict", content=png(1)), 503, "NotReadyError")
        wait_for(lambda: admin(client, "PUT", "deep5", (files.folder / "deep5.safetensors").read_bytes()).status_code
                 == 200, message="the upload to be taken")
        assert client.get("/readyz").status_code == 200
        assert predict(client, "deep5", png(1)).status_code == 200


def test_a_start_that_loads_no_task_says_why_and_is_reported(files, tmp_path):
    from fastapi.testclient import TestClient

    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    shutil.copy(files.other_backbone, tmp_path / "alien.safetensors")
    reasons = []
    config = ServeConfig(tasks_dir=tmp_path, backbone=str(files.folder.parent / "backbone.safetensors"))
    with TestClient(create_app(config, on_failed_start=reasons.append)) as client:
        wait_for(lambda: reasons, message="the failed start")
        body = assert_error(client.get("/readyz"), 503, "NotReadyError")
        assert body["error"] == reasons[0] and "no task could be loaded" in body["error"]
        assert "bad.safetensors" in body["error"] and "alien.safetensors" in body["error"]
        assert_error(client.post("/v1/tasks/alien/predict", content=png(1)), 503, "NotReadyError")


def test_with_wait_for_start_the_startup_ends_once_the_loading_is_over(files, tmp_path):
    # As a Ray Serve replica starts: no request reaches it before its backbone and tasks are loaded.
    from fastapi.testclient import TestClient

    from vptune.serve import MultiTask

    class SlowMultiTask(MultiTask):
        def read(self, *args, **kwargs):
            time.sleep(0.5)
            return super().read(*args, **kwargs)

    config = ServeConfig(tasks_dir=copy_tasks(files, tmp_path / "tasks"))
    with TestClient(create_app(config, lambda b, d: SlowMultiTask(b, device=d), wait_for_start=True)) as client:
        assert client.get("/readyz").status_code == 200  # at once, no waiting
        assert predict(client, "deep5", png(1)).status_code == 200
    # A start that fails, or an empty folder, ends the startup too: /readyz then says why.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "bad.safetensors").write_bytes(b"not a safetensors file")
    for folder in (tmp_path / "bad", tmp_path / "empty"):
        folder.mkdir(exist_ok=True)
        with TestClient(create_app(ServeConfig(tasks_dir=folder), wait_for_start=True)) as client:
            assert_error(client.get("/readyz"), 503, "NotReadyError")


def test_a_full_queue_answers_429_and_the_queued_requests_still_finish(files, tmp_path):
    from vptune.serve import MultiTask

    gate = threading.Event()

    class GatedMultiTask(MultiTask):
        def predict_prepared(self, *args, **kwargs):
            gate.wait(60)
            return super().predict_prepared(*args, **kwargs)

    config = ServeConfig(tasks_dir=copy_tasks(files, tmp_path / "tasks"), max_batch=1, max_wait_ms=0, max_queue=1)
    server = ServerThread(create_app(config, lambda backbone, device: GatedMultiTask(backbone, device=device)))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(2) as pool:
            running = pool.submit(predict, client, "deep5", png(1))
            wait_for(lambda: metric(client, "vptune_batch_size_count") == 1, message="the first batch to start")
            queued = pool.submit(predict, client, "lin", png(2))
            wait_for(lambda: metric(client, "vptune_queue_depth") == 1, message="the second request to queue")
            refused = predict(client, "deep2", png(3))
            gate.set()
            assert_error(refused, 429, "QueueFullError")
            assert refused.headers["retry-after"] == "1"
            assert running.result().status_code == 200 and queued.result().status_code == 200
            assert queued.result().json()["task"] == "lin"
    finally:
        gate.set()
        server.stop()
