"""Image URLs: the fetcher refuses non-public addresses, caps redirects, size and time."""

from __future__ import annotations

import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from capfleet.serve import ServeSettings, create_app
from capfleet.serve.client import ServiceClient
from capfleet.serve.url_fetch import FetchError, UrlFetcher, is_public_address
from tests.serve.helpers import png_bytes, running, serving

IMAGE = png_bytes("blue")


class ImageHandler(BaseHTTPRequestHandler):
    """/image.png, /hop/N (N redirects before the image), /to-private, /to-broken, /big, /slow, /cut, /missing,
    /wait (the image after 0.5 s; `most_at_once` counts how many such requests were open together)."""

    lock = threading.Lock()
    open_now = most_at_once = 0

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/image.png":
            self._send(200, IMAGE, {"Content-Type": "image/png"})
        elif self.path.startswith("/hop/"):
            left = int(self.path.rsplit("/", 1)[1])
            self._send(302, headers={"Location": f"/hop/{left - 1}" if left > 1 else "/image.png"})
        elif self.path == "/to-broken":
            self._send(302, headers={"Location": "http://[::1/image.png"})
        elif self.path == "/to-private":
            self._send(302, headers={"Location": "http://10.1.2.3/image.png"})
        elif self.path == "/big":
            self._send(200, b"\0" * 200_000)
        elif self.path == "/slow":
            self.send_response(200)
            self.end_headers()
            for _ in range(400):  # 40 s of trickle: only the fetcher's 1 s deadline ends it early
                self.wfile.write(b"\0" * 10)
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path == "/wait":
            with ImageHandler.lock:
                ImageHandler.open_now += 1
                ImageHandler.most_at_once = max(ImageHandler.most_at_once, ImageHandler.open_now)
            time.sleep(0.5)
            with ImageHandler.lock:
                ImageHandler.open_now -= 1
            self._send(200, IMAGE, {"Content-Type": "image/png"})
        elif self.path == "/cut":  # promises the whole image, sends half, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(IMAGE)))
            self.end_headers()
            self.wfile.write(IMAGE[: len(IMAGE) // 2])
            self.close_connection = True
        else:
            self._send(404, b"not found")


@pytest.fixture(scope="module")
def image_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def loopback_fetcher(**limits) -> UrlFetcher:
    """The service's fetcher with 127.0.0.1 allowed, so that a local test server can stand in for the web."""
    return UrlFetcher(**{"max_bytes": 100_000, "timeout_s": 2.0, **limits}, address_allowed=lambda a: a.is_loopback)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.8",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_non_public_addresses_are_refused(address):
    assert not is_public_address(ipaddress.ip_address(address))
    url = f"http://[{address}]/a.png" if ":" in address else f"http://{address}/a.png"
    with pytest.raises(FetchError, match="not a public address"):
        UrlFetcher(max_bytes=1000, timeout_s=1).fetch(url)


def test_public_addresses_pass_the_check():
    assert is_public_address(ipaddress.ip_address("8.8.8.8")) and is_public_address(
        ipaddress.ip_address("2606:4700::1")
    )


def test_fetch_follows_three_redirects_and_caps_size_and_time(image_server):
    fetcher = loopback_fetcher()
    assert fetcher.fetch(f"{image_server}/image.png") == IMAGE
    assert fetcher.fetch(f"{image_server}/hop/3") == IMAGE
    with pytest.raises(FetchError, match="more than 3 redirects"):
        fetcher.fetch(f"{image_server}/hop/4")
    with pytest.raises(FetchError, match="10.1.2.3 is not a public address"):
        fetcher.fetch(f"{image_server}/to-private")
    with pytest.raises(FetchError, match="200000 bytes is more than the 100000 allowed"):
        fetcher.fetch(f"{image_server}/big")
    started = time.monotonic()
    with pytest.raises(FetchError, match="took longer than 1 s"):
        loopback_fetcher(timeout_s=1.0).fetch(f"{image_server}/slow")
    assert time.monotonic() - started < 15  # cut at its deadline, not waited out (40 s); margin for a busy machine
    with pytest.raises(FetchError, match="IncompleteRead"):  # half an image is no image
        fetcher.fetch(f"{image_server}/cut")
    with pytest.raises(FetchError, match="HTTP 404"):
        fetcher.fetch(f"{image_server}/missing")
    with pytest.raises(FetchError, match="only http and https"):
        fetcher.fetch("file:///etc/passwd")


def test_the_service_captions_urls_only_when_allowed_and_never_loopback(builtin_model, image_server):
    with serving(builtin_model, allow_urls=True) as url:  # the real fetcher: public addresses only
        response = ServiceClient(url).post_json("/v1/caption", {"images": [f"{image_server}/image.png"]})
        assert response.status == 400 and "127.0.0.1 is not a public address" in response.json()["error"]["message"]
    app = create_app(builtin_model, ServeSettings(allow_urls=True), fetcher=loopback_fetcher())
    with running(app) as url:
        client = ServiceClient(url)
        response = client.post_json("/v1/caption", {"images": [f"{image_server}/hop/2"], "candidates": 1})
        assert response.status == 200 and response.json()["results"][0]["text"], response.body
        response = client.post_json("/v1/caption", {"images": [f"{image_server}/big"]})
        assert response.status == 400 and "images[0]:" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "image_url",
    [
        "http://127.0.0.1:99999/a.png",  # port out of range
        "http://127.0.0.1:abc/a.png",  # port not a number
        "http://[::1/a.png",  # unclosed IPv6 literal
        "http://" + "a" * 64 + ".example/a.png",  # a label over 63 characters (IDNA refuses it)
        "http://a..example/a.png",  # an empty label
        "/to-broken",  # a redirect to an unclosed IPv6 literal
    ],
)
def test_malformed_urls_get_400_naming_the_image_not_500(builtin_model, image_server, image_url):
    image_url = image_server + image_url if image_url.startswith("/") else image_url
    with running(create_app(builtin_model, ServeSettings(allow_urls=True), fetcher=loopback_fetcher())) as url:
        response = ServiceClient(url).post_json("/v1/caption", {"images": [image_url]})
        assert response.status == 400 and response.json()["error"]["message"].startswith("images[0]: "), response.body


def test_a_requests_urls_are_fetched_a_few_at_a_time_and_errors_name_the_first(builtin_model, image_server):
    """16 slow hosts in one request no longer cost 16 waits in a row; nor take every server thread."""
    from capfleet.serve.inputs import URL_FETCHES_AT_ONCE

    ImageHandler.most_at_once = 0
    with running(create_app(builtin_model, ServeSettings(allow_urls=True), fetcher=loopback_fetcher())) as url:
        client = ServiceClient(url)
        response = client.post_json("/v1/embed/image", {"images": [f"{image_server}/wait"] * 8})
        assert response.status == 200 and len(response.json()["embeddings"]) == 8, response.body
        assert 2 <= ImageHandler.most_at_once <= URL_FETCHES_AT_ONCE
        images = [f"{image_server}/wait", f"{image_server}/missing", "%%%", f"{image_server}/image.png"]
        response = client.post_json("/v1/embed/image", {"images": images})  # the bad base64 fails first in time
        assert response.status == 400 and response.json()["error"]["message"].startswith("images[1]: "), response.body
