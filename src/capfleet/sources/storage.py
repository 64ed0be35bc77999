"""Open and list local paths, fsspec URLs (gs://, s3://, file://) and plain http(s) URLs."""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request

HTTP_TIMEOUT_S = 30.0
_CHUNK = 1 << 16
_HTTP_PREFIXES = ("http://", "https://")


def is_url(path: str) -> bool:
    return "://" in path


def is_http(path: str) -> bool:
    return path.startswith(_HTTP_PREFIXES)


def read_bytes(path: str, http_timeout: float = HTTP_TIMEOUT_S) -> bytes:
    """All bytes of one object. Raises OSError with a readable reason on any failure.

    `http_timeout` bounds a whole http(s) download, connection and body, not each socket read:
    a server that trickles bytes cannot hold a worker for longer.
    """
    if not is_url(path):
        with open(path, "rb") as handle:
            return handle.read()
    if is_http(path):
        return _read_http(path, http_timeout)
    import fsspec

    try:
        with fsspec.open(path, "rb") as handle:
            return handle.read()
    except ImportError as exc:  # a cloud backend that is not installed
        raise OSError(f"{exc} (install the matching extra, e.g. pip install 'capfleet[gcs]')") from exc


def _read_http(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "capfleet"})
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            chunks = []
            while chunk := response.read1(_CHUNK):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise TimeoutError
            if response.length:  # read1 ends quietly when the server closes before Content-Length
                raise http.client.IncompleteRead(b"".join(chunks), response.length)
            return b"".join(chunks)
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code} {exc.reason}") from exc
    except TimeoutError as exc:
        raise OSError(f"download took longer than the {timeout:g} s timeout (--http-timeout)") from exc
    except urllib.error.URLError as exc:
        raise OSError(f"cannot fetch URL: {exc.reason}") from exc
    except (ConnectionError, http.client.HTTPException) as exc:
        raise OSError(f"connection lost during the download ({type(exc).__name__}: {exc})") from exc


def filesystem(url: str):
    """The fsspec filesystem and bare path for a URL; a clear hint when the backend is missing."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise OSError(f"{exc} (install the matching extra, e.g. pip install 'capfleet[gcs]')") from exc
    except ValueError as exc:  # e.g. "Protocol not known: foo"
        raise OSError(f"cannot open {url}: {exc}") from exc


def local_path(path: str) -> str | None:
    """The local filesystem path behind `path`, or None for remote URLs."""
    if path.startswith("file://"):
        return path[len("file://") :]
    return None if is_url(path) else os.path.abspath(path)
