"""A real HTTP server on 127.0.0.1 serving a folder, for tests that read URLs."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    gate: Callable[[str], None] | None = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.gate is not None:
            self.gate(self.path)  # the test decides when this request is answered
        super().do_GET()


@contextlib.contextmanager
def serve_folder(folder: Path, gate: Callable[[str], None] | None = None) -> Iterator[str]:
    """Yields the base URL (`http://127.0.0.1:PORT`) while the server runs.

    `gate(path)` runs before each GET is answered: a test blocks in it to hold a request back."""
    handler = type("_Gated", (_Quiet,), {"gate": staticmethod(gate) if gate else None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
