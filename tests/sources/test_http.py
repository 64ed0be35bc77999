"""Images over plain HTTP from a real server on 127.0.0.1: every failed download (a 404, a connection
reset in the middle of the body, a body that trickles past the timeout) is exactly one error record
with its reason, and the other images are captioned."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from capfleet.cli import app
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import read_errors, read_rows

TRICKLE_S = 0.25  # between the bytes of a slow body


class ImageServer(BaseHTTPRequestHandler):
    images: dict[str, bytes] = {}

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _start(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(size))
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        name = self.path.lstrip("/")
        body = self.images.get(name.replace("reset-", "").replace("slow-", ""))
        if body is None:
            self.send_error(404, "Not Found")
        elif name.startswith("reset-"):
            self._start(len(body))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            # SO_LINGER 0: close() sends a TCP RST instead of a clean FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif name.startswith("slow-"):
            self._start(len(body))
            try:
                for byte in body:  # a byte every 0.25 s (7 minutes in all): no single read stalls a whole second
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(TRICKLE_S)
            except OSError:
                pass  # the client gave up, as it should
        else:
            self._start(len(body))
            self.wfile.write(body)


@pytest.fixture
def server(tmp_path):
    ImageServer.images = {path.name: path.read_bytes() for path in write_noise_images(tmp_path / "imgs", 3)}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ImageServer)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_failed_downloads_become_one_error_record_each(server, tmp_path):
    names = ["img-000.jpg", "missing.jpg", "img-001.jpg", "reset-img-000.jpg", "slow-img-001.jpg", "img-002.jpg"]
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{server}/{name}\n" for name in names))
    args = ["caption", str(listing), "-o", str(tmp_path / "out"), "--captioner", "builtin", "--scorer", "none"]
    started = time.monotonic()
    result = CliRunner().invoke(
        app, [*args, "--candidates", "1", "--http-timeout", "1", "--no-progress", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    # A generous bound (a busy machine may take minutes), below the trickle's length: cut off, not waited out.
    assert time.monotonic() - started < 300 < len(ImageServer.images["img-001.jpg"]) * TRICKLE_S

    rows, errors = read_rows(tmp_path / "out"), read_errors(tmp_path / "out")
    assert Counter(row["source"].rsplit("/", 1)[1] for row in rows) == Counter(
        ["img-000.jpg", "img-001.jpg", "img-002.jpg"]
    )
    assert all(row["text"] for row in rows)
    reasons = {error["source"].rsplit("/", 1)[1]: error["error"] for error in errors}
    assert len(errors) == len(reasons) == 3
    assert reasons["missing.jpg"] == "read failed: HTTP 404 Not Found"
    assert reasons["reset-img-000.jpg"].startswith("read failed: connection lost during the download")
    assert reasons["slow-img-001.jpg"] == "read failed: download took longer than the 1 s timeout (--http-timeout)"
    assert "seen: 6  captioned: 3  failed: 3" in result.output
