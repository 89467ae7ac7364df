"""The API's pure ASGI middleware: what is refused before FastAPI parses anything.

* :class:`BodyLimitMiddleware`: a request body over ``max_bytes`` is answered 413 without being read: by its
  ``Content-Length``, or, for a chunked body (no length), by counting the bytes as they arrive;
* :class:`ApiKeyMiddleware`: with an API key set, a request without ``Authorization: Bearer <key>`` is 401.

Both answer with the API's error body (``{"detail": "<one line>"}``, :class:`rfmseg.service.models.ErrorPublic`).
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rfmseg.service.deps import ENV_API_KEY, ENV_MAX_BODY_BYTES, dumps

PUBLIC_PATHS = ("/", "/static/", "/docs-static/")
"""Paths served without the API key: the explorer's page and assets and the docs' assets (no data)."""


async def send_error(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with the API's error body, straight from ASGI."""
    body = dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """Refuse every request without ``Authorization: Bearer <key>`` (compared in constant time; the key sent
    is stripped of surrounding whitespace, as the configured one is: :func:`rfmseg.service.deps.clean_api_key`)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _public(scope["path"]):
            await self.app(scope, receive, send)
            return
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if auth is None:
            detail = f"this API needs a key: send the header 'Authorization: Bearer <key>' ({ENV_API_KEY})"
        else:
            scheme, _, given = auth.strip().partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.key):
                await self.app(scope, receive, send)
                return
            detail = f"the API key is not valid; send the key set in {ENV_API_KEY} as 'Authorization: Bearer <key>'"
        await send_error(send, 401, detail, [(b"www-authenticate", b'Bearer realm="rfmseg"')])


def _public(path: str) -> bool:
    return path == "/" or path.startswith(PUBLIC_PATHS[1:])


class BodyLimitMiddleware:
    """Answer 413 to a request body over ``max_bytes``, before the app reads or parses any of it.

    With a ``Content-Length`` the length decides at once. A chunked body (``Transfer-Encoding``, no length)
    is read here chunk by chunk, counting, up to the limit: over it, 413 and nothing reaches the app; within
    it, the app gets the body as it came. (Bodies within the limit with a length pass straight through: the
    server stops a body at its declared length.)"""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        chunked = False
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
            elif key == b"transfer-encoding":
                chunked = True
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                await send_error(send, 400, "the Content-Length header is not a number of bytes; send the body's size")
                return
            if size > self.max_bytes:
                await self._too_large(send, f"{size:,} bytes")
                return
            await self.app(scope, receive, send)
            return
        if not chunked:  # no length and not chunked: HTTP/1.1 says there is no body
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: the app sees the disconnect
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._too_large(send, f"over {self.max_bytes:,} bytes (chunked)")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, size: str) -> None:
        await send_error(
            send,
            413,
            f"the request body is {size}, over the limit of {self.max_bytes:,} bytes; send it in smaller "
            f"batches, or raise the limit with {ENV_MAX_BODY_BYTES}",
            [(b"connection", b"close")],
        )
