"""What the station accepts from a client: a bounded request body, a photo's name as a label only,
and which HTTP status each kind of unreadable photo gets."""

from __future__ import annotations

import asyncio
from pathlib import PurePath
from typing import Callable

from fastapi import HTTPException
from fastapi.responses import JSONResponse

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
MAX_BATCH_FILES = 64
BODY_TIMEOUT = 30.0  # seconds a request's body may take to arrive

# ImageError.code -> HTTP status: the request was understood but its photo cannot be judged.
STATUS_FOR_CODE = {"empty": 400, "too_large": 413, "not_image": 415, "unsupported": 415,
                   "too_many_pixels": 422, "too_small": 422, "corrupt": 422, "missing": 400}
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp", "tiff": "image/tiff",
               "webp": "image/webp"}


class UploadLimit:
    """ASGI middleware: refuses a body larger than ``limit`` bytes with 413 — at once when the
    Content-Length says so, else as soon as the streamed body passes it — or slower to arrive than
    ``body_timeout`` seconds (408: a client trickling its upload holds a connection for ever
    otherwise), and reports every response's route and status to ``on_response`` (/metrics)."""

    def __init__(self, app, limit: int, on_response: Callable[[str, int], None],
                 body_timeout: float = BODY_TIMEOUT) -> None:
        self.app, self.limit, self.on_response, self.body_timeout = app, limit, on_response, body_timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def counting_send(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._too_large()(scope, receive, counting_send)
        else:
            seen, complete = 0, False
            deadline = asyncio.get_running_loop().time() + self.body_timeout

            async def limited_receive():
                nonlocal seen, complete
                if complete:  # after the body, receive only waits for a disconnect: no limit
                    return await receive()
                try:
                    message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
                except TimeoutError:
                    raise HTTPException(408, f"request body not received within {self.body_timeout:g} s") from None
                seen += len(message.get("body", b""))
                complete = message["type"] != "http.request" or not message.get("more_body", False)
                if seen > self.limit:
                    raise HTTPException(413, f"upload larger than {self.limit} bytes")
                return message

            try:
                await self.app(scope, limited_receive, counting_send)
            except HTTPException as exc:  # raised while the body streamed in, before any response
                await JSONResponse({"detail": exc.detail}, exc.status_code)(scope, receive, counting_send)
            except Exception:
                # an error nothing handled: the server answers 500 further out; count it here first
                self.on_response(getattr(scope.get("route"), "path", "unmatched"), 500)
                raise
        route = scope.get("route")
        self.on_response(getattr(route, "path", "unmatched"), status["code"])

    def _too_large(self) -> JSONResponse:
        return JSONResponse({"detail": f"upload larger than {self.limit} bytes"}, 413)


def upload_label(filename: str | None) -> str:
    """The upload's name as a label only: its last path component, printable, at most 200 chars."""
    name = PurePath((filename or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name if name not in ("", ".", "..") else "upload"


class SameOrigin:
    """ASGI middleware for a station without a token: only requests addressed to one of its
    ``hosts`` (the Host header: a page on a rebinding DNS name is refused, 421), and no
    state-changing request from another site (a foreign ``Origin``, or ``Sec-Fetch-Site:
    cross-site``, 403). Requests with neither header (scripts, PLCs, curl) pass."""

    SAFE = ("GET", "HEAD", "OPTIONS")

    def __init__(self, app, hosts: set[str]) -> None:
        self.app, self.hosts = app, {h.lower() for h in hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = None
        if hostname(headers.get("host", "")) not in self.hosts:
            refusal = (421, "unknown Host header: this station answers to " + ", ".join(sorted(self.hosts)))
        elif scope["method"] not in self.SAFE:
            origin = headers.get("origin")
            if headers.get("sec-fetch-site") == "cross-site" or (
                    origin and origin != "null" and hostname(origin.split("://", 1)[-1]) not in self.hosts):
                refusal = (403, "cross-origin request refused (set a token to accept requests from other sites)")
            elif origin == "null":
                refusal = (403, "request from an opaque origin refused")
        if refusal is None:
            return await self.app(scope, receive, send)
        await JSONResponse({"detail": refusal[1]}, refusal[0])(scope, receive, send)


def hostname(authority: str) -> str:
    """The host of ``host[:port]`` or ``[v6]:port``, lower case."""
    authority = authority.strip().split("/", 1)[0]
    if authority.startswith("["):
        return authority[1:authority.find("]")].lower()
    return authority.rsplit(":", 1)[0].lower() if authority.count(":") == 1 else authority.lower()
