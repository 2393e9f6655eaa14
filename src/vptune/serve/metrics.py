"""Prometheus metrics of one app, in a registry of its own (several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
UNKNOWN_TASK = "_unknown"


class Metrics:
    """Requests by task and status, latency and queue-time histograms, batch sizes, tasks loaded, loads and evictions."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "vptune_http_requests", "HTTP requests by route template, method and status code",
            ["route", "method", "status"], registry=self.registry,
        )
        self.predictions = Counter(
            "vptune_predictions", "Images asked for by task and HTTP status of their request "
            f"(task '{UNKNOWN_TASK}' for names that were not loaded)",
            ["task", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "vptune_request_seconds", "Time from request to response, by route template",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.queue_time = Histogram(
            "vptune_queue_seconds", "Time an image waited in the batching queue",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "vptune_batch_size", "Images per model call", buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.load_errors = Counter(
            "vptune_task_load_errors", "Task files in the folder that could not be loaded", registry=self.registry,
        )
        self.tasks_loaded = Gauge("vptune_tasks_loaded", "Tasks in memory", registry=self.registry)
        self.task_loads = Counter(
            "vptune_task_loads", "Tasks loaded on a request (tier misses)", registry=self.registry,
        )
        self.task_evictions = Counter(
            "vptune_task_evictions", "Tasks evicted from memory, least recently used first", registry=self.registry,
        )
        self.task_load_seconds = Histogram(
            "vptune_task_load_seconds", "Time to load a task on a request", buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.task_memory = Gauge(
            "vptune_task_memory_bytes", "Bytes the loaded tasks hold beyond the shared backbone", registry=self.registry,
        )
        self.queue_depth = Gauge("vptune_queue_depth", "Images waiting for a batch", registry=self.registry)

    def observe_load(self, seconds: float) -> None:
        self.task_loads.inc()
        self.task_load_seconds.observe(seconds)

    def observe_batch(self, size: int, waits: list[float]) -> None:
        self.batch_size.observe(size)
        for wait in waits:
            self.queue_time.observe(wait)

    def observe_request(self, route: str, method: str, status: int, seconds: float, tasks: list[str]) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        for task in tasks:
            self.predictions.labels(task, str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
