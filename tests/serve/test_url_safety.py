"""The service as an attacker probes it: host names that resolve inward, DNS answers that change
after the check, redirects to private names, bodies without a Content-Length, the default bind and
the key from the environment, and the URL limits the service's own settings give its fetcher."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

import pytest

from capfleet.serve import ServeSettings, create_app
from capfleet.serve.client import ServiceClient
from capfleet.serve.url_fetch import FetchError, UrlFetcher
from tests.serve.helpers import png_bytes, running, serving
from tests.serve.test_url_fetch import IMAGE, ImageHandler

_real_getaddrinfo = socket.getaddrinfo
_real_create_connection = socket.create_connection
PUBLIC = "93.184.216.34"  # stands for a server on the internet: RoutedNetwork delivers it to a local one


class FakeDns:
    """Answers for made-up host names: per name, one answer per lookup (the last repeats), each answer
    a comma-separated list of addresses; every other name, 127.0.0.1 included, goes to the real resolver."""

    def __init__(self, answers: dict[str, list[str]]):
        self.answers = answers
        self.lookups: dict[str, int] = {}

    def __call__(self, host, port, *args, **kwargs):
        if host not in self.answers:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        count = self.lookups[host] = self.lookups.get(host, 0) + 1
        answer = self.answers[host][min(count, len(self.answers[host])) - 1]
        return [
            (socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in answer.split(",")
        ]


@contextmanager
def http_server(handler) -> Iterator[int]:
    """A real server on 127.0.0.1 with `handler`; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def image_server():
    with http_server(ImageHandler) as port:
        yield port


@pytest.mark.parametrize(
    ("name", "addresses"),
    [("inward.test", ["127.0.0.1"]), ("office.test", ["10.20.30.40"]), ("metadata.test", ["169.254.169.254"])],
)
def test_host_names_that_resolve_inward_are_refused_by_the_service(builtin_model, monkeypatch, name, addresses):
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns({name: addresses}))
    with serving(builtin_model, allow_urls=True) as url:  # the service's own fetcher: public addresses only
        response = ServiceClient(url).post_json("/v1/caption", {"images": [f"http://{name}/cat.png"]})
    assert response.status == 400, response.body
    assert f"{addresses[0]} is not a public address" in response.json()["error"]["message"]


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::ffff:7f00:1]"])
def test_loopback_spelled_another_way_is_refused_by_the_service(builtin_model, host):
    # Spellings the system resolver reads as 127.0.0.1 but a string or ip_address() check would not.
    with serving(builtin_model, allow_urls=True) as url:
        response = ServiceClient(url).post_json("/v1/caption", {"images": [f"http://{host}/cat.png"]})
    assert response.status == 400, response.body
    message = response.json()["error"]["message"]
    assert "is not a public address" in message and ("127.0.0.1" in message or "::ffff:7f00:1" in message), message


def test_one_inward_answer_among_public_ones_is_enough_to_refuse(monkeypatch):
    # A public answer first: a fetcher that checked only the first answer would pass it. Connections
    # are intercepted, so even a broken fetcher sends nothing off this machine.
    connections = []
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns({"mixed.test": ["8.8.8.8,127.0.0.1"]}))
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: connections.append(address) or 1 / 0)
    with pytest.raises(FetchError, match="refusing to fetch from mixed.test: 127.0.0.1"):
        UrlFetcher(max_bytes=1000, timeout_s=1).fetch("http://mixed.test/a.png")
    assert connections == []


def test_a_dns_answer_that_changes_after_the_check_is_never_connected_to(monkeypatch, image_server):
    # First answer: the checked address (the test server). Any later lookup would say 127.0.0.2, which
    # the policy refuses and where nothing listens: the fetch succeeds only if it connects as checked.
    dns = FakeDns({"rebind.test": ["127.0.0.1", "127.0.0.2"]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    fetcher = UrlFetcher(max_bytes=100_000, timeout_s=5, address_allowed=lambda a: str(a) == "127.0.0.1")
    assert fetcher.fetch(f"http://rebind.test:{image_server}/image.png") == IMAGE
    assert dns.lookups["rebind.test"] == 1  # resolved once, for the check; connected to that address


def test_a_redirect_to_a_private_host_name_is_refused(monkeypatch):
    class Redirecting(ImageHandler):
        def do_GET(self):
            self._send(302, headers={"Location": "http://intranet.test/secret.png"})

    monkeypatch.setattr(socket, "getaddrinfo", FakeDns({"intranet.test": ["192.168.7.7"]}))
    fetcher = UrlFetcher(max_bytes=1000, timeout_s=5, address_allowed=lambda a: str(a) == "127.0.0.1")
    with http_server(Redirecting) as port:
        with pytest.raises(FetchError, match="refusing to fetch from intranet.test: 192.168.7.7"):
            fetcher.fetch(f"http://127.0.0.1:{port}/go")


class RoutedNetwork:
    """socket.create_connection on a machine whose whole internet is PUBLIC, routed to a server on
    127.0.0.1. Every connection is recorded; any address but PUBLIC and 127.0.0.1 is refused, so
    nothing leaves this machine whatever a fetcher does."""

    def __init__(self, port: int):
        self.port = port
        self.connections: list[tuple[str, int]] = []

    def __call__(self, address, *args, **kwargs):
        self.connections.append((address[0], address[1]))
        if address[0] == PUBLIC:
            return _real_create_connection(("127.0.0.1", self.port), *args, **kwargs)
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(f"the test network has no route to {address[0]}")
        return _real_create_connection(address, *args, **kwargs)


@contextmanager
def public_server(monkeypatch, handler, dns: FakeDns) -> Iterator[tuple[int, RoutedNetwork]]:
    """`handler` served as if on the internet at PUBLIC, host names answered by `dns`."""
    with http_server(handler) as port:
        network = RoutedNetwork(port)
        monkeypatch.setattr(socket, "getaddrinfo", dns)
        monkeypatch.setattr(socket, "create_connection", network)
        yield port, network


def test_the_service_connects_to_the_address_it_checked_when_dns_changes_its_answer(builtin_model, monkeypatch):
    # The check sees PUBLIC; any later lookup says 127.0.0.1, where the same server listens: a fetcher
    # that resolved again to connect would also get the image, so the test reads where it connected.
    dns = FakeDns({"rebind.test": [PUBLIC, "127.0.0.1"]})
    with public_server(monkeypatch, ImageHandler, dns) as (port, network):
        with serving(builtin_model, allow_urls=True) as url:  # the default policy: public addresses only
            body = {"images": [f"http://rebind.test:{port}/image.png"], "candidates": 1}
            response = ServiceClient(url).post_json("/v1/caption", body)
    assert response.status == 200, response.body
    assert [c for c in network.connections if c[1] == port] == [(PUBLIC, port)]
    assert dns.lookups["rebind.test"] == 1


class RedirectingInward(ImageHandler):
    def do_GET(self):
        port = self.server.server_address[1]
        targets = {"/to-name": "http://intranet.test/secret.png", "/to-loopback": f"http://127.0.0.1:{port}/image.png"}
        self._send(302, headers={"Location": targets[self.path]})


@pytest.mark.parametrize(
    ("path", "refused"), [("/to-name", "intranet.test: 192.168.7.7"), ("/to-loopback", "127.0.0.1")]
)
def test_the_service_refuses_a_redirect_from_a_public_host_to_a_private_one(builtin_model, monkeypatch, path, refused):
    dns = FakeDns({"cdn.test": [PUBLIC], "intranet.test": ["192.168.7.7"]})
    with public_server(monkeypatch, RedirectingInward, dns) as (port, network):
        with serving(builtin_model, allow_urls=True) as url:
            response = ServiceClient(url).post_json("/v1/caption", {"images": [f"http://cdn.test:{port}{path}"]})
    assert response.status == 400, response.body
    message = response.json()["error"]["message"]
    assert "refusing to fetch from" in message and refused in message and "is not a public address" in message
    assert [c for c in network.connections if c[1] == port] == [(PUBLIC, port)]  # the first hop only
    assert ("192.168.7.7", 80) not in network.connections


def test_the_service_settings_bound_what_its_fetcher_reads(builtin_model, image_server):
    settings = ServeSettings(allow_urls=True, allow_private_urls=True, max_upload_mb=0.1, url_timeout_s=1.0)
    with running(create_app(builtin_model, settings)) as url:  # no injected fetcher: the one the settings make
        client = ServiceClient(url)
        ok = client.post_json("/v1/caption", {"images": [f"http://127.0.0.1:{image_server}/image.png"]})
        assert ok.status == 200, ok.body
        big = client.post_json("/v1/caption", {"images": [f"http://127.0.0.1:{image_server}/big"]})
        assert big.status == 400 and "more than the 104857 allowed" in big.json()["error"]["message"]
        slow = client.post_json("/v1/caption", {"images": [f"http://127.0.0.1:{image_server}/slow"]})
        assert slow.status == 400 and "took longer than 1 s" in slow.json()["error"]["message"]


def test_the_service_stops_reading_a_body_without_a_length_at_its_upload_cap(builtin_model):
    # 1 MB, no Content-Length, then silence until the test ends: only a count while reading answers
    # before the 30 s timeout (a fetcher that read to the end first would say "took longer").
    done = threading.Event()

    class Stalling(ImageHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            try:
                self.wfile.write(b"\0" * 1_000_000)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
            done.wait(60)

    settings = ServeSettings(allow_urls=True, allow_private_urls=True, max_upload_mb=0.1, url_timeout_s=30)
    try:
        with http_server(Stalling) as port, running(create_app(builtin_model, settings)) as url:
            response = ServiceClient(url).post_json("/v1/caption", {"images": [f"http://127.0.0.1:{port}/"]})
    finally:
        done.set()
    assert response.status == 400, response.body
    assert "the body is more than the 104857 allowed" in response.json()["error"]["message"]


def test_a_name_that_never_resolves_is_cut_at_the_service_url_timeout(builtin_model, monkeypatch):
    # A hostile name server that never answers: the lookup is part of the fetch's time, so the
    # request ends at --url-timeout (1 s) instead of when the lookup does (here: the end of the test).
    answered = threading.Event()

    def silent(host, port, *args, **kwargs):
        if host == "silent.test":
            answered.wait(120)
            raise socket.gaierror(socket.EAI_AGAIN, "no answer")
        return _real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", silent)
    try:
        with serving(builtin_model, allow_urls=True, url_timeout_s=1.0) as url:
            response = ServiceClient(url, timeout=60).post_json("/v1/caption", {"images": ["http://silent.test/a.png"]})
    finally:
        answered.set()
    assert response.status == 400, response.body
    assert "took longer than 1 s" in response.json()["error"]["message"]


def _post_unsized(url: str, chunks: list[bytes], content_type: str) -> tuple[int, dict]:
    """POST with Transfer-Encoding: chunked, so no Content-Length tells the server the size up front."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.putrequest("POST", "/v1/caption")
        connection.putheader("Content-Type", content_type)
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        try:
            for chunk in chunks:
                connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered 413 and closed before the rest arrived
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@pytest.mark.parametrize("kind", ["json", "multipart"])
def test_the_upload_limit_holds_for_bodies_without_a_content_length(builtin_model, kind):
    image = base64.b64encode(png_bytes("red", (256, 256)) + b"\0" * 200_000).decode()
    if kind == "json":
        body, content_type = json.dumps({"images": [image]}).encode(), "application/json"
    else:
        boundary = "capfleetboundary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n'
            f"Content-Type: image/png\r\n\r\n{image}\r\n--{boundary}--\r\n"
        ).encode()
        content_type = f"multipart/form-data; boundary={boundary}"
    chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    with serving(builtin_model, max_upload_mb=0.1) as url:
        status, payload = _post_unsized(url, chunks, content_type)
        assert status == 413 and "--max-upload-mb" in payload["error"]["message"], payload
        small = json.dumps({"images": [base64.b64encode(png_bytes()).decode()], "candidates": 1}).encode()
        assert _post_unsized(url, [small], "application/json")[0] == 200  # the same path under the limit


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port`, read from the kernel's tables."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                family = socket.AF_INET if width == 8 else socket.AF_INET6
                found.add(socket.inet_ntop(family, raw[::-1] if width == 8 else raw))
    return found


def test_capfleet_serve_binds_loopback_and_takes_the_key_from_the_environment(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CAPFLEET_API_KEY": "s3cret", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "capfleet.cli", "serve", "--captioner", "builtin", "--scorer", "builtin"]
    server = subprocess.Popen([*command, "--port", str(port), "--device", "cpu"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        assert server.poll() is None, server.stderr.read().decode()
        assert _listening_addresses(port) == {"127.0.0.1"}  # not 0.0.0.0: nothing outside this machine reaches it
        base = f"http://127.0.0.1:{port}"
        body = {"images": [base64.b64encode(png_bytes()).decode()], "candidates": 1}
        assert ServiceClient(base).post_json("/v1/caption", body).status == 401
        assert ServiceClient(base, api_key="wrong").post_json("/v1/caption", body).status == 401
        assert ServiceClient(base, api_key="s3cret").post_json("/v1/caption", body).status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/caption"),
        ("POST", "/v1/embed/image"),
        ("POST", "/v1/embed/text"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
    ],
)
def test_without_the_key_nothing_of_the_request_is_read(builtin_model, method, path):
    # A body FastAPI would parse (and answer 422 about) before its route's checks: the key must come first.
    with serving(builtin_model, api_key="s3cret") as url:
        for key in (None, "wrong"):
            response = ServiceClient(url, api_key=key).request(
                method, path, b"{not json" if method == "POST" else None, {"Content-Type": "application/json"}
            )
            assert response.status == 401, (key, response.body)
            assert response.json()["error"]["type"] == "authentication_error"
