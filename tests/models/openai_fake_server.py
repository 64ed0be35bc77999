"""A real HTTP server on 127.0.0.1 that speaks the chat-completions shape and injects faults.

The scenario of a request is its prompt text (tests use `--prompt "{original_text}"`, so each
image's caption file picks what the server does to it).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DROP_MID_BODY = "X-Test-Drop-Mid-Body"  # the handler sends half the body, then hangs up
RETRY_DATE = "Wed, 21 Oct 2026 07:28:00 GMT"  # the "waitdate" scenario's Retry-After, an HTTP date


class FakeChatServer:
    def __init__(self, slow_seconds: float = 1.5, delay: float = 0.0):
        self.requests: Counter = Counter()  # scenario -> requests received
        self.bodies: list[dict] = []
        self.authorizations: set[str | None] = set()
        self.in_flight = self.max_in_flight = 0
        self.slow_seconds, self.delay = slow_seconds, delay
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, body: dict) -> tuple[int, dict, dict]:
        """(status, headers, json) for one request."""
        text = next(part["text"] for part in body["messages"][0]["content"] if part["type"] == "text")
        scenario = text.strip()
        with self.lock:
            self.requests[scenario] += 1
            count = self.requests[scenario]
        n, seed = body.get("n", 1), body.get("seed")
        if scenario == "down500":
            return 500, {}, {"error": {"message": "model crashed"}}
        if scenario == "bad400":
            return 400, {}, {"error": {"message": "image too large"}}
        if scenario == "flaky429" and count == 1:
            return 429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}
        if scenario == "wait3" and count == 1:
            return 429, {"Retry-After": "3"}, {"error": {"message": "come back in 3 s"}}
        if scenario == "waitdate" and count == 1:
            return 503, {"Retry-After": RETRY_DATE}, {"error": {"message": "down for maintenance"}}
        if scenario == "dropped" and count == 1:
            return 200, {DROP_MID_BODY: "1"}, {"error": {"message": "never arrives whole"}}
        if scenario == "slow":
            time.sleep(self.slow_seconds)
        if scenario == "fewer":
            n = 1  # a server that ignores n
        if scenario == "refuses":
            texts = ["I'm sorry, I cannot describe this image."] * n
        else:
            texts = [f"a green square seen by sampler {seed} choice {index}" for index in range(n)]
        choices = [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ]
        return 200, {}, {"object": "chat.completion", "choices": choices}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    server.authorizations.add(self.headers.get("Authorization"))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay)
                    status, headers, payload = server.answer(body)
                    data = json.dumps(payload).encode()
                    drop = headers.pop(DROP_MID_BODY, None)
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2] if drop else data)
                    self.close_connection = bool(drop)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up
                finally:
                    with server.lock:
                        server.in_flight -= 1

        return Handler
