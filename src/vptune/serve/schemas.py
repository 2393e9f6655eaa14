"""Request and response bodies of the HTTP service (they also make the OpenAPI page)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_ITEMS = 256
# Request bodies take values of their declared JSON type only (`"top_k": true` or `"5"` is a
# 422, not 1 or 5) and no unknown fields (a misspelt `topk` is refused, not ignored).
STRICT = ConfigDict(strict=True, extra="forbid")


class Prediction(BaseModel):
    label: str = Field(description="class name")
    index: int = Field(description="class index in the task's head")
    score: float = Field(description="softmax probability (multi-label tasks: the class's sigmoid probability)")


class TaskSummary(BaseModel):
    name: str
    state: Literal["known", "loading", "loaded"] = Field(
        "loaded", description="known: its file is listed, not in memory (loaded on its first request); "
                              "loading; loaded: in memory")
    method: str | None = Field(None, description="tuning method, e.g. vpt-deep or linear (once loaded)")
    classes: int | None = Field(None, description="number of classes (once loaded)")
    bytes: int | None = Field(None, description="size of the per-task file (once loaded)")
    error: str | None = Field(None, description="set when the task's file was replaced by one that cannot be "
                                                "loaded: why (the previous version keeps serving)")


class TaskDetail(TaskSummary):
    class_names: list[str]


class FailedFile(BaseModel):
    name: str = Field(description="task name of a file in the tasks folder that serves nothing")
    state: Literal["failed"] = "failed"
    error: str = Field(description="why it could not be loaded (its requests are answered 422 with this)")


class TaskList(BaseModel):
    tasks: list[TaskSummary] = Field(description="every task that can be asked for, with its state")
    failed: list[FailedFile] = Field(default_factory=list, description="files of the folder that could not be loaded")


class PredictResponse(BaseModel):
    task: str
    predictions: list[Prediction] = Field(description="best first")


class PredictQuery(BaseModel):
    """Query parameters of the one-image route; a misspelt one (`topk`) is a 422, not ignored."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(5, ge=1, le=1000, description="classes to return")


class BatchItem(BaseModel):
    model_config = STRICT

    task: str = Field(description="task name, as listed by GET /v1/tasks")
    image: str = Field(description="the image file's bytes (PNG, JPEG, ...), base64-encoded")


class BatchRequest(BaseModel):
    model_config = STRICT

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_ITEMS)
    top_k: int = Field(5, ge=1, le=1000)


class BatchResponse(BaseModel):
    results: list[PredictResponse] = Field(description="one per item, in the order sent")


class Status(BaseModel):
    status: str
    detail: str | None = None


class ErrorBody(BaseModel):
    error: str = Field(description="one line saying what is wrong and how to fix it")
    type: str = Field(description="error class, e.g. UnknownTaskError, ImageError, BodyTooLarge")
