"""Request and response bodies of the HTTP service (they also make the OpenAPI page)."""

from __future__ import annotations

from pydantic import BaseModel, Field

MAX_ITEMS = 256


class Prediction(BaseModel):
    label: str = Field(description="class name")
    index: int = Field(description="class index in the task's head")
    score: float = Field(description="softmax probability (multi-label tasks: the class's sigmoid probability)")


class TaskSummary(BaseModel):
    name: str
    method: str = Field(description="tuning method, e.g. vpt-deep or linear")
    classes: int = Field(description="number of classes")
    bytes: int = Field(description="size of the per-task file")


class TaskDetail(TaskSummary):
    class_names: list[str]


class TaskList(BaseModel):
    tasks: list[TaskSummary]


class PredictResponse(BaseModel):
    task: str
    predictions: list[Prediction] = Field(description="best first")


class BatchItem(BaseModel):
    task: str = Field(description="task name, as listed by GET /v1/tasks")
    image: str = Field(description="the image file's bytes (PNG, JPEG, ...), base64-encoded")


class BatchRequest(BaseModel):
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
