"""A dependency-free client for the service (stdlib http.client): used by the benchmark and handy in
scripts. One connection per client object; make one per thread."""

from __future__ import annotations

import http.client
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ServiceResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def encode_multipart(files: list[tuple[str, bytes]], fields: dict[str, Any] | None = None) -> tuple[bytes, str]:
    """(body, content type) of a multipart form with repeated `file` parts and plain fields."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        if value is not None:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for filename, data in files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        parts.append(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class ServiceClient:
    """`caption([paths or (name, bytes)], candidates=...)` and raw `request(...)` against one server."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.api_key = api_key
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> ServiceResponse:
        headers = dict(headers or {})
        if self.api_key:
            headers.setdefault("Authorization", f"Bearer {self.api_key}")
        for attempt in range(2):  # a kept-alive connection the server closed is reopened once
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._connection.request(method, path, body=body, headers=headers)
                response = self._connection.getresponse()
                data = response.read()
                return ServiceResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post_json(self, path: str, payload: Any) -> ServiceResponse:
        return self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def caption(self, images: list, **options: Any) -> ServiceResponse:
        """POST /v1/caption with each image (a path, or a (file name, bytes) pair) as a `file` part."""
        files = [
            (Path(image).name, Path(image).read_bytes()) if not isinstance(image, tuple) else image for image in images
        ]
        body, content_type = encode_multipart(files, options)
        return self.request("POST", "/v1/caption", body, {"Content-Type": content_type})

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
