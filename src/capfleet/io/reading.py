"""Read one object (local file, fsspec URL, http(s)) whole, within a size cap and a download deadline."""

from __future__ import annotations

import http.client
import os
import stat
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from capfleet.http_body import BodyTooLarge, read_capped
from capfleet.io.paths import is_http, is_url, missing_backend

HTTP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on reading one object: its size (--max-bytes) and a whole http(s) download's time."""

    max_bytes: int | None = None
    http_timeout: float = HTTP_TIMEOUT_S


def read_bytes(path: str, limits: ReadLimits = ReadLimits()) -> bytes:  # noqa: B008 - frozen, shared default
    """All bytes of one object. Raises OSError with a readable reason on any failure.

    The size cap is enforced while reading, so a symlink to /dev/zero or a huge sparse file
    costs `max_bytes` of memory at most, never the whole file. `http_timeout` bounds a whole
    http(s) download, connection and body, not each socket read: a server that trickles
    bytes cannot hold a worker for longer.
    """
    if not is_url(path):
        return _read_local(path, limits.max_bytes)
    if is_http(path):
        return _read_http(path, limits.max_bytes, limits.http_timeout)
    import fsspec

    try:
        with fsspec.open(path, "rb") as handle:
            return _read_capped(handle, limits.max_bytes)
    except ImportError as exc:  # a cloud backend that is not installed
        raise OSError(missing_backend(path, exc)) from exc


def _read_capped(handle, max_bytes: int | None) -> bytes:
    data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise OSError(f"larger than --max-bytes {max_bytes}")
    return data


def _read_local(path: str, max_bytes: int | None) -> bytes:
    """Regular files only: a FIFO would block forever, a device (/dev/zero) never ends.

    O_NONBLOCK makes opening a FIFO return at once, so the check after `fstat` cannot hang
    even when a file is swapped for a FIFO after listing.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file (a FIFO, device or socket)")
        if max_bytes is not None and info.st_size > max_bytes:
            raise OSError(f"larger than --max-bytes {max_bytes} ({info.st_size} bytes)")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return _read_capped(handle, max_bytes)
    finally:
        os.close(fd)


def _read_http(url: str, max_bytes: int | None, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "capfleet"})
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return read_capped(response, max_bytes, deadline)
    except BodyTooLarge as exc:
        declared = f" (Content-Length {exc.declared})" if exc.declared else ""
        raise OSError(f"larger than --max-bytes {max_bytes}{declared}") from exc
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code} {exc.reason}") from exc
    except TimeoutError as exc:
        raise OSError(f"download took longer than the {timeout:g} s timeout (--http-timeout)") from exc
    except urllib.error.URLError as exc:
        raise OSError(f"cannot fetch URL: {exc.reason}") from exc
    except (ConnectionError, http.client.HTTPException) as exc:
        raise OSError(f"connection lost during the download ({type(exc).__name__}: {exc})") from exc
