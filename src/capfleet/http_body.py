"""Reading an HTTP response body under a byte cap and a deadline.

Dataset downloads (io/reading.py) and the service's URL fetcher (serve/url_fetch.py) both
face servers that lie about or omit Content-Length, send forever, trickle a byte a minute or
hang up half-way; both read through this one loop and only phrase the errors their own way.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable

CHUNK = 1 << 16


class BodyTooLarge(ValueError):
    """The body is over the cap; `declared` is the Content-Length when that alone told us."""

    def __init__(self, declared: str | None = None) -> None:
        super().__init__(f"Content-Length {declared}" if declared else "body over the cap")
        self.declared = declared


def read_capped(
    response: http.client.HTTPResponse,
    max_bytes: int | None,
    deadline: float,
    before_read: Callable[[float], None] = lambda remaining: None,
) -> bytes:
    """The whole body, or BodyTooLarge, TimeoutError (past `deadline`, a time.monotonic() value)
    or http.client.IncompleteRead (the server closed before its Content-Length).

    The deadline is checked before every chunk, so a trickling server is cut off; `before_read`
    gets the seconds left, e.g. to shorten the socket timeout of the next read.
    """
    declared = response.getheader("Content-Length")
    if max_bytes is not None and declared and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(declared)
    chunks, size = [], 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        before_read(remaining)
        chunk = response.read1(CHUNK)  # whatever has arrived, so the deadline is checked per chunk
        if not chunk:
            break
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BodyTooLarge()
        chunks.append(chunk)
    if response.length:  # read1 ends quietly when the server closes before Content-Length
        raise http.client.IncompleteRead(b"".join(chunks), response.length)
    return b"".join(chunks)
