"""An ASGI middleware that refuses request bodies over a size limit without reading them whole."""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .http_errors import BodyTooLarge


DRAIN_BYTES = 64 * 2**20


class BodyLimit:
    """413 for a body over `limit_for(scope)` bytes: at once from Content-Length, else while it streams in."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _refuse(scope, receive, send, 400, "Content-Length is not a number", "BadRequest")
                return
            if int(length) > limit:
                # Reading (and dropping) a body of moderate size lets the client see the answer
                # instead of a connection reset; a huge one is cut off.
                if int(length) <= limit + DRAIN_BYTES:
                    await _drain(receive)
                await _refuse(scope, receive, send, 413, BodyTooLarge(limit).detail, "BodyTooLarge")
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, error: str, kind: str) -> None:
    response = JSONResponse({"error": error, "type": kind}, status_code=status)
    await response(scope, receive, send)
