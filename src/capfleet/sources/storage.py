"""Open and list local paths, fsspec URLs (gs://, s3://, file://) and plain http(s) URLs."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

HTTP_TIMEOUT_S = 30
_HTTP_PREFIXES = ("http://", "https://")


def is_url(path: str) -> bool:
    return "://" in path


def is_http(path: str) -> bool:
    return path.startswith(_HTTP_PREFIXES)


def read_bytes(path: str) -> bytes:
    """All bytes of one object. Raises OSError with a readable reason on any failure."""
    if not is_url(path):
        with open(path, "rb") as handle:
            return handle.read()
    if is_http(path):
        return _read_http(path)
    import fsspec

    try:
        with fsspec.open(path, "rb") as handle:
            return handle.read()
    except ImportError as exc:  # a cloud backend that is not installed
        raise OSError(_missing_backend(path, exc)) from exc


def _read_http(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "capfleet"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError) as exc:
        raise OSError(f"cannot fetch URL: {getattr(exc, 'reason', exc)}") from exc


def filesystem(url: str):
    """The fsspec filesystem and bare path for a URL; a clear hint when the backend is missing."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise OSError(_missing_backend(url, exc)) from exc

    except ValueError as exc:  # e.g. "Protocol not known: foo"
        raise OSError(f"cannot open {url}: {exc}") from exc


_EXTRAS = {"gs": "gcs", "gcs": "gcs", "s3": "s3", "s3a": "s3", "http": "http", "https": "http"}


def _missing_backend(url: str, exc: ImportError) -> str:
    """The extra that brings the backend for this URL's scheme (s3:// -> capfleet[s3])."""
    extra = _EXTRAS.get(url.split("://", 1)[0].lower())
    hint = f"pip install 'capfleet[{extra}]'" if extra else "install the fsspec backend for this URL scheme"
    return f"{exc} ({hint})"


def local_path(path: str) -> str | None:
    """The local filesystem path behind `path`, or None for remote URLs."""
    if path.startswith("file://"):
        return path[len("file://") :]
    return None if is_url(path) else os.path.abspath(path)
