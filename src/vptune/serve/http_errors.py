"""Errors of the HTTP service, each with the status code it is answered with."""

from __future__ import annotations

from starlette.exceptions import HTTPException

from ..errors import VptuneError


class ServeError(VptuneError):
    """A request the service refuses; `status_code` is the HTTP answer."""

    status_code = 400


class UnknownTaskError(ServeError):
    """The request names a task that is not loaded."""

    status_code = 404


class ImageError(ServeError):
    """The body is not a decodable image."""

    status_code = 422


class ImageTooLargeError(ServeError):
    """The image has more pixels than the service decodes."""

    status_code = 413


class QueueFullError(ServeError):
    """The batching queue is full; the client should retry later."""

    status_code = 429


class NotReadyError(ServeError):
    """The backbone is still loading."""

    status_code = 503


class AdminDisabledError(ServeError):
    """Admin routes are off because no admin token was configured."""

    status_code = 403


class UnauthorizedError(ServeError):
    """An admin route was called without the right bearer token."""

    status_code = 401


class UploadError(ServeError):
    """An uploaded per-task file cannot be used."""

    status_code = 422


class BodyTooLarge(HTTPException):
    """The request body passed the size limit (an HTTPException, so body parsers pass it through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


class TaskLoadError(ServeError):
    """The request names a task whose file cannot be loaded; the message names the file and why."""

    status_code = 422


class ReadOnlyTasksError(ServeError):
    """Admin changes asked of tasks that come from a read-only source (a Hub repository)."""

    status_code = 409
