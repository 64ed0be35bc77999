"""What a path names (local file, fsspec URL such as gs://, s3://, file://, or http(s)) and its filesystem."""

from __future__ import annotations

import os

from capfleet.errors import install_line

_HTTP_PREFIXES = ("http://", "https://")


def is_url(path: str) -> bool:
    return "://" in path


def is_http(path: str) -> bool:
    return path.startswith(_HTTP_PREFIXES)


def filesystem(url: str):
    """The fsspec filesystem and bare path for a URL; a clear hint when the backend is missing."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise OSError(missing_backend(url, exc)) from exc
    except ValueError as exc:  # e.g. "Protocol not known: foo"
        raise OSError(f"cannot open {url}: {exc}") from exc


_EXTRAS = {"gs": "gcs", "gcs": "gcs", "s3": "s3", "s3a": "s3", "http": "http", "https": "http"}


def missing_backend(url: str, exc: ImportError) -> str:
    """The extra that brings the backend for this URL's scheme (s3:// -> capfleet[s3])."""
    extra = _EXTRAS.get(url.split("://", 1)[0].lower())
    hint = install_line(extra) if extra else "install the fsspec backend for this URL scheme"
    return f"{exc} ({hint})"


def local_path(path: str) -> str | None:
    """The local filesystem path behind `path`, or None for remote URLs."""
    if path.startswith("file://"):
        return path[len("file://") :]
    return None if is_url(path) else os.path.abspath(path)
