"""The HTTP endpoints against a real server: results, embeddings, docs, and every kind of bad request."""

from __future__ import annotations

import base64
import logging
import socket
import time

import numpy as np
import pytest

import capfleet
from capfleet.serve.client import ServiceClient, encode_multipart
from tests.image_zoo import ERROR, write_zoo
from tests.serve.helpers import png_bytes, serving


def test_health_docs_and_page(service):
    client = ServiceClient(service)
    health = client.request("GET", "/health").json()
    assert health["captioner"] == "builtin" and health["scorer"] == "builtin" and health["device"] == "cpu"
    assert health["queue_depth"] == 0 and health["auth"] is False
    assert client.request("GET", "/docs").status == 200
    paths = client.request("GET", "/openapi.json").json()["paths"]
    assert {"/v1/caption", "/v1/embed/image", "/v1/embed/text", "/v1/chat/completions"} <= set(paths)
    page = client.request("GET", "/")
    assert page.status == 200 and b"Drop images here" in page.body
    assert b'src="http' not in page.body and b'href="http' not in page.body and b"@import" not in page.body  # no CDN


def test_multipart_caption_answers_one_ranked_result_per_image_in_order(service, builtin_model, scene_files):
    response = ServiceClient(service).caption(scene_files[:3], candidates=3, seed=5)
    assert response.status == 200, response.body
    answer = response.json()
    assert answer["captioner"] == "builtin" and len(answer["results"]) == 3
    assert {"decode_ms", "queue_ms", "model_ms", "total_ms", "batch_images"} <= set(answer["timings"])
    for result in answer["results"]:
        assert result["text"] == result["candidates"][int(np.argmax(result["scores"]))]
    # the service is the Python API: the same images, options and seed give the same captions
    direct = builtin_model.caption(scene_files[:3], candidates=3, seed=5)
    assert [result["text"] for result in answer["results"]] == [result.text for result in direct]


def test_json_caption_takes_base64_and_data_urls(service, scene_files):
    data = scene_files[0].read_bytes()
    images = [base64.b64encode(data).decode(), "data:image/png;base64," + base64.b64encode(data).decode()]
    response = ServiceClient(service).post_json("/v1/caption", {"images": images, "candidates": 2, "seed": 1})
    assert response.status == 200, response.body
    first, second = response.json()["results"]
    assert first["candidates"] and second["candidates"] and len(first["scores"]) == len(first["candidates"])


def test_base64_as_shell_tools_write_it_is_read(service, scene_files):
    """`base64 photo.png` wraps at 76 columns; some encoders drop the padding; schemes may come in capitals."""
    encoded = base64.b64encode(scene_files[0].read_bytes()).decode()
    wrapped = "\n".join(encoded[start : start + 76] for start in range(0, len(encoded), 76)) + "\n"
    images = [wrapped, encoded.rstrip("="), "DATA:image/png;BASE64," + encoded, "data:image/png;base64," + wrapped]
    assert encoded.endswith("=")  # the unpadded case is one
    response = ServiceClient(service).post_json("/v1/embed/image", {"images": images})
    assert response.status == 200, response.body
    vectors = np.array(response.json()["embeddings"])
    assert vectors.shape[0] == 4 and np.abs(vectors - vectors[0]).max() < 1e-4  # one image, four spellings
    unreadable = ServiceClient(service).post_json("/v1/caption", {"images": [encoded[:-5] + "@@@@="]})
    assert unreadable.status == 400 and "not valid base64 image data (" in unreadable.json()["error"]["message"]


def test_embeddings_are_normalised_and_match_the_api(service, builtin_model, scene_files):
    client = ServiceClient(service)
    body, content_type = encode_multipart([(path.name, path.read_bytes()) for path in scene_files[:2]])
    images = client.request("POST", "/v1/embed/image", body, {"Content-Type": content_type}).json()
    texts = client.post_json("/v1/embed/text", {"texts": ["a red circle", "a blue star"]}).json()
    image_vectors, text_vectors = np.array(images["embeddings"]), np.array(texts["embeddings"])
    assert image_vectors.shape == (2, images["dim"]) and text_vectors.shape == (2, texts["dim"])
    assert np.allclose(np.linalg.norm(text_vectors, axis=1), 1, atol=1e-4)
    assert np.allclose(image_vectors, builtin_model.embed_images(scene_files[:2]), atol=1e-4)


def test_every_bad_image_gets_a_4xx_naming_it(service, tmp_path):
    expected = write_zoo(tmp_path / "zoo")
    client = ServiceClient(service)
    for name, outcome in expected.items():
        response = client.caption([(name, (tmp_path / "zoo" / name).read_bytes())], candidates=1)
        if outcome == ERROR:
            assert response.status == 400, (name, response.body)
            assert response.json()["error"]["message"].startswith(f"{name}: "), response.body
        else:
            assert response.status == 200, (name, response.body)


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"images": []}, 400, "no image given"),
        ({"images": ["%%%not-base64"]}, 400, "images[0]: not valid base64"),
        ({"images": ["http://example.com/a.png"]}, 400, "start it with --allow-urls"),
        ({"images": ["x"], "candidates": 0}, 422, "candidates"),
        ({"images": ["x"], "decoding": "greedy"}, 422, "decoding"),
        ({"images": ["x"], "colour": "red"}, 422, "colour"),
        ({"images": [base64.b64encode(png_bytes()).decode()], "prompt": "a photo of"}, 400, "takes no prompt"),
        ({"images": [base64.b64encode(png_bytes()).decode()] * 17}, 400, "at most 16"),
    ],
)
def test_bad_json_requests_get_clear_4xx(service, payload, status, message):
    response = ServiceClient(service).post_json("/v1/caption", payload)
    assert response.status == status and message in response.json()["error"]["message"], response.body


def test_malformed_bodies_and_missing_files_get_4xx(service):
    client = ServiceClient(service)
    assert client.request("POST", "/v1/caption", b"{not json", {"Content-Type": "application/json"}).status == 400
    body, content_type = encode_multipart([], {"candidates": 2})
    response = client.request("POST", "/v1/caption", body, {"Content-Type": content_type})
    assert response.status == 400 and "no image given" in response.json()["error"]["message"]
    response = client.request("POST", "/v1/caption", b"--x\r\ngarbage", {"Content-Type": "multipart/form-data"})
    assert 400 <= response.status < 500
    assert client.post_json("/v1/embed/text", {"texts": []}).status == 422


def test_uploads_over_the_limit_get_413(builtin_model):
    with serving(builtin_model, max_upload_mb=0.05) as url:
        client = ServiceClient(url)
        response = client.caption([("big.png", png_bytes(size=(400, 400)) + b"\0" * 60_000)])
        assert response.status == 413 and "max-upload-mb" in response.json()["error"]["message"]
        assert ServiceClient(url).caption([("small.png", png_bytes())], candidates=1).status == 200


def test_api_key_is_required_on_v1_only(builtin_model):
    with serving(builtin_model, api_key="s3cret") as url:
        assert ServiceClient(url).request("GET", "/health").json()["auth"] is True
        denied = ServiceClient(url).caption([("a.png", png_bytes())], candidates=1)
        assert denied.status == 401 and denied.headers["www-authenticate"] == "Bearer"
        assert ServiceClient(url, api_key="wrong").caption([("a.png", png_bytes())]).status == 401
        assert ServiceClient(url, api_key="s3cret").caption([("a.png", png_bytes())], candidates=1).status == 200


def test_cors_is_off_unless_an_origin_is_allowed(service, builtin_model):
    origin = {"Origin": "http://elsewhere.example"}
    assert "access-control-allow-origin" not in ServiceClient(service).request("GET", "/health", headers=origin).headers
    with serving(builtin_model, cors_origins=["http://elsewhere.example"]) as url:
        headers = ServiceClient(url).request("GET", "/health", headers=origin).headers
        assert headers["access-control-allow-origin"] == "http://elsewhere.example"


def test_a_browser_preflight_needs_no_key_and_a_refusal_is_readable_cross_origin(builtin_model):
    # Browsers send no Authorization on a preflight: the key check must sit inside CORS, not before it.
    origin = "http://elsewhere.example"
    with serving(builtin_model, api_key="s3cret", cors_origins=[origin]) as url:
        preflight = ServiceClient(url).request(
            "OPTIONS",
            "/v1/caption",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status == 200 and preflight.headers["access-control-allow-origin"] == origin
        denied = ServiceClient(url).post_json("/v1/caption", {"images": []})
        assert denied.status == 401  # without the Origin header: no CORS headers needed
        denied = ServiceClient(url).request("POST", "/v1/caption", b"{}", {"Origin": origin})
        assert denied.status == 401 and denied.headers["access-control-allow-origin"] == origin


def test_a_server_without_a_scorer_captions_unranked_and_refuses_embeddings(scene_files):
    with serving(capfleet.load("builtin", scorer=None, device="cpu")) as url:
        client = ServiceClient(url)
        assert client.request("GET", "/health").json()["scorer"] == "none"
        [result] = client.caption(scene_files[:1], candidates=2).json()["results"]
        assert result["scores"] == [] and result["text"] == result["candidates"][0]
        refused = client.post_json("/v1/embed/text", {"texts": ["a red circle"]})
        assert refused.status == 400 and "--scorer none" in refused.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/caption", "/v1/embed/image", "/v1/chat/completions"])
def test_json_nested_thousands_deep_gets_400_not_500(service, path):
    response = ServiceClient(service).request("POST", path, b"[" * 100_000, {"Content-Type": "application/json"})
    assert response.status == 400, response.body


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data; boundary=b"])
def test_a_client_that_leaves_mid_upload_is_no_server_error(service, caplog, content_type):
    caplog.set_level(logging.INFO, logger="capfleet.serve")
    host, port = service.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"POST /v1/caption HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: 50000\r\n\r\n"
        sock.sendall(head.encode() + b"--b\r\n" + b"a" * 1000)  # then hangs up, 49 kB short
    deadline = time.monotonic() + 10
    while "closed the connection" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "closed the connection" in caplog.text and "unexpected error" not in caplog.text, caplog.text
    assert ServiceClient(service).request("GET", "/health").status == 200


@pytest.mark.parametrize("path", ["/v1/caption", "/v1/embed/image"])
def test_a_multipart_content_type_in_capitals_is_still_multipart(service, path):
    body, content_type = encode_multipart([("a.png", png_bytes())], {"candidates": 1} if path == "/v1/caption" else {})
    content_type = content_type.replace("multipart/form-data", "Multipart/Form-Data")  # media types are case-blind
    response = ServiceClient(service).request("POST", path, body, {"Content-Type": content_type})
    assert response.status == 200, response.body


@pytest.mark.parametrize("path", ["/v1/caption", "/v1/embed/image"])
def test_a_multipart_body_cut_short_gets_400_not_fewer_results(service, path):
    # e.g. a Content-Length that undercounts: the cut-off last file was dropped and the rest answered 200
    body, content_type = encode_multipart([("a.png", png_bytes("red")), ("b.png", png_bytes("blue"))])
    for cut in (10, 200):
        response = ServiceClient(service).request("POST", path, body[:-cut], {"Content-Type": content_type})
        assert response.status == 400 and "cut short" in response.json()["error"]["message"], response.body
    response = ServiceClient(service).request("POST", path, body[:-2], {"Content-Type": content_type})
    assert response.status == 200, response.body  # only the CRLF after the closing boundary is missing: whole


def test_more_new_tokens_than_the_builtin_decoder_has_positions_gets_400_not_500(service):
    # the schemas allow up to 256; the built-in decoder has 64 positions
    image = base64.b64encode(png_bytes()).decode()
    response = ServiceClient(service).post_json("/v1/caption", {"images": [image], "max_new_tokens": 100})
    assert response.status == 400 and "at most 64" in response.json()["error"]["message"], response.body
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}}]
    chat = {"messages": [{"role": "user", "content": content}], "max_tokens": 65}
    response = ServiceClient(service).post_json("/v1/chat/completions", chat)
    assert response.status == 400 and "at most 64" in response.json()["error"]["message"], response.body
