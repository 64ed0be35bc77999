"""Dynamic batching: concurrent requests share model calls; a full queue answers 503; slow models 504."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from capfleet.api import CaptionModel
from capfleet.serve.batching import BatchWorker, QueueFull
from capfleet.serve.client import ServiceClient
from tests.serve.helpers import png_bytes, serving


class GatedModel(CaptionModel):
    """The built-in model, except that captioning waits until the test opens the gate."""

    def __init__(self, model: CaptionModel):
        super().__init__(model.captioner, model.scorer, names=(model.captioner_name, model.scorer_name))
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def caption(self, images, **options):
        self.entered.set()
        self.gate.wait(timeout=30)
        self.calls.append(len(images))
        return super().caption(images, **options)


def test_concurrent_requests_are_answered_by_shared_model_calls(builtin_model, scene_files):
    # No timing: the model holds the first request while seven more queue behind it, so however busy the
    # machine, the seven are all waiting when it is free again, and one model call must answer them.
    gated = GatedModel(builtin_model)
    with serving(gated, max_batch=8, max_wait_ms=10) as url:

        def one(index: int) -> dict:
            response = ServiceClient(url).caption([scene_files[index % len(scene_files)]], candidates=2)
            assert response.status == 200, response.body
            return response.json()

        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(one, 0)
            assert gated.entered.wait(timeout=60)
            rest = [pool.submit(one, index) for index in range(1, 8)]
            deadline = time.monotonic() + 60  # only a broken build waits this long
            while ServiceClient(url).request("GET", "/health").json()["queue_depth"] < 7:
                assert time.monotonic() < deadline, "the requests never queued"
                time.sleep(0.02)
            gated.gate.set()
            answers = [first.result(), *(future.result() for future in rest)]
    assert gated.calls == [1, 7]
    assert [answer["timings"]["batch_images"] for answer in answers] == [1] + [7] * 7
    assert all(len(answer["results"]) == 1 and answer["results"][0]["text"] for answer in answers)


def test_seeded_jobs_run_alone_and_a_failing_job_fails_alone(builtin_model, scene_files):
    gated = GatedModel(builtin_model)
    worker = BatchWorker(gated, max_batch=8, max_wait_ms=50, max_queue=32)
    images = builtin_model.open_images(scene_files[:2])

    async def scenario():
        jobs = [
            worker.submit("caption", images[:1], {"candidates": 1}),
            worker.submit("caption", images[1:], {"candidates": 1}),
            worker.submit("caption", images[:1], {"candidates": 1, "seed": 3}),
            worker.submit("caption", images[:1], {"candidates": 0}),  # invalid: raises in the model call
        ]
        tasks = [asyncio.ensure_future(job) for job in jobs]
        await asyncio.sleep(0.1)
        gated.gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    worker.start()
    try:
        first, second, seeded, invalid = asyncio.run(scenario())
    finally:
        worker.stop()
    assert first[1].batch_images == second[1].batch_images == 2  # batched together
    assert seeded[1].batch_images == 1  # a seeded job is never batched with others
    assert isinstance(invalid, ValueError) and "candidates must be >= 1" in str(invalid)
    assert first[0][0].text and second[0][0].text and seeded[0][0].text


def test_a_full_queue_answers_503_with_retry_after_and_slow_answers_504(builtin_model):
    gated = GatedModel(builtin_model)
    upload = [("a.png", png_bytes())]
    # 10 s: the queue must still be full when the third request arrives, however busy the machine.
    with serving(gated, max_batch=1, max_queue=16, max_images=16, request_timeout_s=10) as url:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(ServiceClient(url).caption, upload, candidates=1)  # the model holds this one
            assert gated.entered.wait(timeout=10)
            waiting = pool.submit(ServiceClient(url).caption, upload * 16, candidates=1)  # fills the queue
            deadline = time.monotonic() + 10
            while ServiceClient(url).request("GET", "/health").json()["queue_depth"] < 16:
                assert time.monotonic() < deadline, "the queue never filled"
                time.sleep(0.02)
            refused = ServiceClient(url).caption(upload, candidates=1)
            assert refused.status == 503 and refused.headers["retry-after"] == "1", refused.body
            assert "queue is full" in refused.json()["error"]["message"]
            for timed_out in (running.result(), waiting.result()):
                assert timed_out.status == 504 and "within 10 s" in timed_out.json()["error"]["message"]
        gated.gate.set()  # the held call finishes first; on a loaded machine that can outlast one timeout
        deadline = time.monotonic() + 120  # a machine at load 20 took longer than 30 s to drain the queue
        while (status := ServiceClient(url).caption(upload, candidates=1).status) == 504:
            assert time.monotonic() < deadline, "the service never recovered"
        assert status == 200


def test_queue_full_is_raised_before_anything_is_queued(builtin_model):
    worker = BatchWorker(builtin_model, max_batch=1, max_queue=2)

    async def submit_too_many():
        try:
            await worker.submit("embed_texts", ["a", "b", "c"])
        except QueueFull:
            return worker.depth

    assert asyncio.run(submit_too_many()) == 0
