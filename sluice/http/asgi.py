"""Small helpers over raw ASGI: reading a request and writing a response without framework
objects on the hot path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 32 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


def client_address(scope: Scope) -> str:
    """The peer's address as the server saw it (behind a proxy, what uvicorn's
    `--forwarded-allow-ips` lets X-Forwarded-For make it)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def oversized_headers(scope: Scope, total_limit: int, line_limit: int) -> str | None:
    """Why the request's headers are too large (431), or None. One list of sizes on every request
    (max and sum in C); the message is worked out only for a refusal."""
    headers = scope["headers"]
    sizes = [len(name) + len(value) for name, value in headers]
    longest, total = max(sizes, default=0), sum(sizes)
    # Each header also takes ": " and CRLF on the wire.
    if longest + 4 > line_limit:
        name = next(n for n, v in headers if len(n) + len(v) == longest)
        return f"The request header '{name[:64].decode('latin-1')}' is larger than {line_limit} bytes."
    if total + 4 * len(headers) > total_limit:
        return f"The request headers are larger than {total_limit} bytes in all."
    return None


async def discard_body(receive: Receive, limit: int) -> bool:
    """Reads and drops up to `limit` bytes of the body, so a small refused request ends cleanly;
    False when there is more (the rest is never read: the connection is closed after the answer)."""
    try:
        await read_body(receive, limit)
    except BodyTooLarge:
        return False
    except ClientGone:
        return True
    return True


def headers_of(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, limit: int = MAX_BODY) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge()
            parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def encode_headers(content_type: str, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    out = [(b"content-type", content_type.encode("latin-1"))]
    out.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    return out


async def respond(send: Send, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": encode_headers(content_type, headers)})
    await send({"type": "http.response.body", "body": body})
