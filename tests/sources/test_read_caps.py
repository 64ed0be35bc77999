"""`--max-bytes` holds while reading: each test fails if the code read everything and checked after.

A stream that never ends (an HTTP body without Content-Length, an fsspec file without a size)
would never return to a read-everything check; a local file larger than memory would be loaded
whole. Each case is driven through the CLI and must end with an error record for that image.
"""

from __future__ import annotations

import importlib
import io
import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fsspec
import pytest
from fsspec.spec import AbstractFileSystem
from typer.testing import CliRunner

from capfleet.cli import app
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import read_errors, read_rows

CAP = 100_000
runner = CliRunner()
NONE = ["--captioner", "none", "--workers", "2", "--no-progress", "--max-bytes", str(CAP), "--http-timeout", "20"]


def caption(*args: object):
    return runner.invoke(app, ["caption", *map(str, args), *NONE])


def test_an_http_body_that_never_ends_is_cut_at_the_cap(tmp_path):
    sent = []

    class Endless(BaseHTTPRequestHandler):
        def do_GET(self):  # no Content-Length, and no end: only the reader's cap can stop it
            self.send_response(200)
            self.end_headers()
            total = 0
            try:
                while True:
                    self.wfile.write(b"\0" * 65536)
                    total += 65536
            except OSError:
                sent.append(total)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "list.txt").write_text(f"http://127.0.0.1:{server.server_port}/big.jpg\n")
        result = caption(tmp_path / "list.txt", "-o", tmp_path / "out")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    [error] = read_errors(tmp_path / "out")
    assert f"larger than --max-bytes {CAP}" in error["error"], error  # not the 20 s timeout
    assert sent and sent[0] < 64 * CAP  # the client hung up near the cap (plus socket buffers)


class _ZeroStream(io.RawIOBase):
    """Zeros for ever, with no size; counts what was read and refuses to go far past the cap."""

    read_total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if _ZeroStream.read_total > 20 * CAP:
            raise OSError("read 20x past --max-bytes: the cap was not enforced while reading")
        size = min(len(buffer), 65536)
        buffer[:size] = b"\0" * size
        _ZeroStream.read_total += size
        return size


class EndlessFileSystem(AbstractFileSystem):
    """`endless://NAME.jpg`: objects of unknown size that never end."""

    protocol = "endless"

    def info(self, path, **kwargs):
        return {"name": path, "size": None, "type": "file"}

    def _open(self, path, mode="rb", **kwargs):
        return io.BufferedReader(_ZeroStream())


@pytest.fixture
def endless_protocol():
    fsspec.register_implementation("endless", EndlessFileSystem, clobber=True)
    _ZeroStream.read_total = 0
    yield
    importlib.import_module("fsspec.registry")._registry.pop("endless", None)  # no public unregister


def test_an_fsspec_file_without_a_size_is_cut_at_the_cap(tmp_path, endless_protocol):
    write_noise_images(tmp_path / "imgs", 1)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'imgs' / 'img-000.jpg'}\nendless://bucket/huge.jpg\n")
    result = caption(tmp_path / "list.txt", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    [error] = read_errors(tmp_path / "out")
    assert error["source"] == "endless://bucket/huge.jpg"
    assert f"larger than --max-bytes {CAP}" in error["error"], error
    assert _ZeroStream.read_total <= 2 * CAP
    assert len(read_rows(tmp_path / "out")) == 1


def test_a_local_file_over_the_cap_is_never_loaded(tmp_path):
    write_noise_images(tmp_path / "imgs", 1)
    with open(tmp_path / "imgs" / "sparse.jpg", "wb") as handle:
        handle.truncate(1 << 30)  # 1 GB of holes: fast to read, and 1 GB of memory if loaded
    tracemalloc.start()
    try:
        result = caption(tmp_path / "imgs", "-o", tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    [error] = read_errors(tmp_path / "out")
    assert error["source"].endswith("sparse.jpg") and f"larger than --max-bytes {CAP}" in error["error"]
    assert peak < 100 * 1024 * 1024, peak  # far below the file's 1 GB
