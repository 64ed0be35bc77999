"""The OpenAI engine's waits between attempts, asserted through an injected sleep (never timed):
exponential backoff, Retry-After honoured (0 included), and a connection dropped mid-body retried."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest
from PIL import Image

from capfleet.decoding import DecodingOptions
from capfleet.models.engines.base import PartialBatchError
from capfleet.models.engines.openai_api import OpenAICaptioner
from tests.models.openai_fake_server import RETRY_DATE, FakeChatServer

BACKOFF = 0.5
JITTER = 1.25  # each backoff wait is stretched by up to a quarter at random


def _captioner(server: FakeChatServer, waits: list[float], retries: int = 3, now: float = 0.0) -> OpenAICaptioner:
    options = DecodingOptions("sample", 0.9, 30)
    return OpenAICaptioner(
        "served-model",
        server.api_base,
        options,
        retries=retries,
        image_size=16,
        backoff=BACKOFF,
        sleep=waits.append,
        clock=lambda: now,
    )


def _caption(captioner: OpenAICaptioner, scenario: str) -> list[str]:
    [texts] = captioner.generate([Image.new("RGB", (20, 16), "green")], 2, prompt=scenario, seeds=[7])
    return texts


def test_backoff_doubles_between_attempts_and_gives_up_after_the_retries():
    waits: list[float] = []
    with FakeChatServer() as server:
        with pytest.raises(PartialBatchError) as failed:
            _caption(_captioner(server, waits, retries=3), "down500")
    assert server.requests["down500"] == 4 and "after 4 attempts" in failed.value.errors[0]
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):
        assert BACKOFF * 2**attempt <= wait <= BACKOFF * 2**attempt * JITTER, waits


@pytest.mark.parametrize(("scenario", "expected"), [("wait3", 3.0), ("flaky429", 0.0)])
def test_retry_after_is_the_wait_even_when_it_is_zero(scenario, expected):
    waits: list[float] = []
    with FakeChatServer() as server:
        texts = _caption(_captioner(server, waits), scenario)
    assert len(texts) == 2 and server.requests[scenario] == 2
    assert waits == [expected]  # not the 0.5 s backoff: the server said when


@pytest.mark.parametrize(("before", "expected"), [(4.0, 4.0), (-60.0, 0.0)])
def test_retry_after_as_an_http_date_waits_until_that_date(before, expected):
    # The other form RFC 9110 allows: the wait is the date less the (injected) clock; a past date is now.
    waits: list[float] = []
    now = parsedate_to_datetime(RETRY_DATE).timestamp() - before
    with FakeChatServer() as server:
        texts = _caption(_captioner(server, waits, now=now), "waitdate")
    assert len(texts) == 2 and server.requests["waitdate"] == 2
    assert waits == [expected]


def test_a_connection_dropped_mid_body_is_retried():
    waits: list[float] = []
    with FakeChatServer() as server:
        texts = _caption(_captioner(server, waits), "dropped")
    assert len(texts) == 2 and server.requests["dropped"] == 2
    assert len(waits) == 1 and BACKOFF <= waits[0] <= BACKOFF * JITTER


def test_an_error_that_retrying_cannot_fix_is_not_retried():
    waits: list[float] = []
    with FakeChatServer() as server:
        with pytest.raises(PartialBatchError) as failed:
            _caption(_captioner(server, waits), "bad400")
    assert server.requests["bad400"] == 1 and waits == [] and "HTTP 400" in failed.value.errors[0]
