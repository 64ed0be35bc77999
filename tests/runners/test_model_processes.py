"""--model-processes: helper processes with their own models caption batches beside the run's process.

The rows must be those one process writes (each image samples from its own seed), every image
exactly once when a helper dies mid-batch, fails a batch or never starts, and no helper may
outlive its run. Real spawned processes on tiny random-weight BLIP + CLIP.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from capfleet.config import ConfigError, RunConfig
from capfleet.runners.lifecycle import run_caption
from capfleet.runners.model_processes import ModelProcesses, model_bytes, plan
from tests.pipeline.helpers import read_errors, read_rows

IMAGES = 24  # six batches of 4: the helper cannot take them all


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    for index in range(IMAGES):
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index:02d}.jpg", quality=90)
    return folder


@pytest.fixture
def settings(tiny_blip, tiny_clip, images):
    def make(out, **more) -> RunConfig:
        more = {"batch_size": 4, "threads": 1, "progress": False, "candidates": 2, "embeddings": True, **more}
        return RunConfig([str(images)], str(out), captioner=str(tiny_blip), scorer=str(tiny_clip), **more)

    return make


@pytest.fixture(scope="module")
def one_process_out(tiny_blip, tiny_clip, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    config = RunConfig([str(images)], str(out), captioner=str(tiny_blip), scorer=str(tiny_clip), batch_size=4,
                       threads=1, progress=False, candidates=2, embeddings=True, model_processes=1)  # fmt: skip
    run_caption(config)
    return out


@pytest.fixture(scope="module")
def one_process_rows(one_process_out):
    return _rows(one_process_out)


def _rows(out) -> list[tuple]:
    return [(row["key"], row["text"], row["candidates"], row["scores"]) for row in read_rows(out)]


def exit_when_captioning(captioner, scorer) -> None:
    """A helper killed mid-batch (out of memory): its process ends without a word."""

    def die(*args, **kwargs):
        os._exit(3)

    captioner.generate = die


def raise_when_captioning(captioner, scorer) -> None:
    def fail(*args, **kwargs):
        raise RuntimeError("this helper cannot caption")

    captioner.generate = fail


def fail_to_load(captioner, scorer) -> None:
    raise OSError("weights unreadable")


def _with_helper(settings, out, after_load=None):
    config = settings(out, threads=2)
    helpers = ModelProcesses(config, helpers=1, threads=1, after_load=after_load)
    try:
        ready = helpers.wait_until_ready()
        summary = run_caption(config, model_processes=helpers)
    finally:
        helpers.close()
    return helpers, ready, summary


@pytest.mark.slow  # each helper spawns and imports torch: seconds on 2 cores
def test_a_helper_captions_batches_and_the_rows_are_those_of_one_process(
    settings, one_process_rows, one_process_out, tmp_path
):
    helpers, ready, summary = _with_helper(settings, tmp_path / "two")
    assert ready == 1
    assert 0 < helpers.images < IMAGES  # both processes captioned batches
    assert summary.stats.captioned == IMAGES and summary.stats.failed == 0
    assert _rows(tmp_path / "two") == one_process_rows
    embeddings = sorted(one_process_out.glob("*/embeddings.npz"))  # --embeddings: the scorer's vectors, byte for byte
    assert embeddings and [path.read_bytes() for path in embeddings] == [
        path.read_bytes() for path in sorted((tmp_path / "two").glob("*/embeddings.npz"))
    ]
    assert torch.get_num_threads() == 2  # --threads 2, as loading set it: the helpers' share (1) was given back


@pytest.mark.slow
def test_a_helper_that_dies_mid_batch_loses_and_doubles_nothing(settings, one_process_rows, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="capfleet"):
        helpers, ready, summary = _with_helper(settings, tmp_path / "out", exit_when_captioning)
    assert ready == 1 and helpers.helpers[0].lost and helpers.images == 0
    assert "died (exit code 3" in caplog.text
    assert _rows(tmp_path / "out") == one_process_rows  # its batch captioned again here, once
    assert read_errors(tmp_path / "out") == [] and summary.stats.captioned == IMAGES


@pytest.mark.slow
def test_a_shard_retried_with_helper_batches_in_flight_loses_and_doubles_nothing(
    settings, one_process_rows, tmp_path, monkeypatch
):
    """The source fails mid-shard while a helper holds a batch: the retry gets every image once."""
    from capfleet.runners.shard_processor import ShardProcessor

    read = ShardProcessor._decoded
    attempts = []

    def fails_once(self, shard, retry):
        attempts.append(shard)
        for index, sample in enumerate(read(self, shard, retry)):
            if len(attempts) == 1 and index == 14:
                raise OSError("the network went away")
            yield sample

    monkeypatch.setattr(ShardProcessor, "_decoded", fails_once)
    helpers, ready, summary = _with_helper(settings, tmp_path / "out")
    assert ready == 1 and len(attempts) == 2  # the shard ran twice
    assert _rows(tmp_path / "out") == one_process_rows and read_errors(tmp_path / "out") == []
    assert summary.stats.captioned == IMAGES and 0 < helpers.images < IMAGES


@pytest.mark.slow
def test_a_batch_a_helper_fails_is_captioned_here(settings, one_process_rows, tmp_path):
    helpers, _, summary = _with_helper(settings, tmp_path / "out", raise_when_captioning)
    assert not helpers.helpers[0].lost  # an error in a batch is not a dead process: it keeps serving
    assert helpers.images == 0
    assert _rows(tmp_path / "out") == one_process_rows and read_errors(tmp_path / "out") == []


@pytest.mark.slow
def test_a_helper_that_cannot_load_is_dropped_and_the_run_goes_on(settings, one_process_rows, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="capfleet"):
        helpers, ready, summary = _with_helper(settings, tmp_path / "out", fail_to_load)
    assert ready == 0 and "could not load the models: OSError: weights unreadable" in caplog.text
    assert _rows(tmp_path / "out") == one_process_rows


@pytest.mark.slow
def test_a_run_closes_the_helpers_it_started(settings, one_process_rows, tmp_path, caplog):
    before = set(multiprocessing.active_children())
    with caplog.at_level(logging.INFO, logger="capfleet"):
        run_caption(settings(tmp_path / "out", threads=2, model_processes=2))
    assert "captioning in 2 processes x 1 torch threads" in caplog.text
    assert "helper processes captioned" in caplog.text
    assert set(multiprocessing.active_children()) <= before
    assert _rows(tmp_path / "out") == one_process_rows


@pytest.mark.slow
def test_auto_starts_a_helper_once_the_work_left_is_worth_it(settings, one_process_rows, tmp_path, caplog, monkeypatch):
    before = set(multiprocessing.active_children())
    # Less work left than a helper's start is worth (the threshold stands in for a short run: paces measured
    # on a loaded CI machine vary tenfold)
    monkeypatch.setattr("capfleet.runners.model_processes.WORTH_STARTING_S", 1e9)
    with caplog.at_level(logging.INFO, logger="capfleet"):
        short = run_caption(settings(tmp_path / "short", threads=2))
    assert "captioning in" not in caplog.text and short.stats.captioned == IMAGES
    monkeypatch.setattr("capfleet.runners.model_processes.WORTH_STARTING_S", 0.0)
    with caplog.at_level(logging.INFO, logger="capfleet"):
        run_caption(settings(tmp_path / "one-batch", threads=2, limit=4))
    assert "captioning in" not in caplog.text  # a first batch's pace includes the warm-up: it decides nothing
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="capfleet"):
        run_caption(settings(tmp_path / "long", threads=2))
    assert "captioning in 2 processes x 1 torch threads" in caplog.text  # after the second batch, here
    assert _rows(tmp_path / "long") == one_process_rows
    assert set(multiprocessing.active_children()) <= before
    assert torch.get_num_threads() == 2


def test_auto_starts_no_helper_when_memory_was_taken_since_the_run_began(
    settings, one_process_rows, tmp_path, caplog, monkeypatch
):
    """Other tasks on the node load their models while this one measures its pace: the room is read again."""
    readings = iter([64 * 10**9])  # at the run's start; then only 1 MB is left
    monkeypatch.setattr("capfleet.runners.model_processes.available_memory", lambda: next(readings, 10**6))
    monkeypatch.setattr("capfleet.runners.model_processes.WORTH_STARTING_S", 0.0)
    with caplog.at_level(logging.INFO, logger="capfleet"):
        summary = run_caption(settings(tmp_path / "out", threads=2))
    assert "captioning in" not in caplog.text and summary.stats.captioned == IMAGES
    assert caplog.text.count("no helper process yet") == 1  # said once, not once a batch
    assert _rows(tmp_path / "out") == one_process_rows


@pytest.mark.slow
def test_no_helper_is_started_for_models_a_caller_handed_in(settings, tmp_path, caplog, monkeypatch):
    """A helper loads models from the settings' names: the caller's own objects could differ."""
    from capfleet.runners.models import load_models

    monkeypatch.setattr("capfleet.runners.model_processes.WORTH_STARTING_S", 0.0)
    config = settings(tmp_path / "out", threads=2)
    with caplog.at_level(logging.INFO, logger="capfleet"):
        summary = run_caption(config, models=load_models(config))
    assert "captioning in" not in caplog.text and summary.stats.captioned == IMAGES


def test_auto_splits_a_cpu_run_in_two_processes(tmp_path):
    def split(threads=2, spare=True, **more):
        config = RunConfig([str(tmp_path)], str(tmp_path / "out"), device="cpu", **more)
        return plan(config, threads, spare)

    assert split() == (2, 1)
    assert split(threads=8) == (2, 4)
    assert split(threads=1) == (1, 1)
    assert split(spare=False) == (1, 2)  # no room for a second copy of the models
    assert split(captioner="none") == (1, 2)
    assert split(engine="openai", api_base="http://127.0.0.1:9/v1") == (1, 2)
    assert split(model_processes=3, threads=6) == (3, 2)
    assert split(model_processes=1, threads=8) == (1, 8)


@pytest.mark.parametrize(
    ("more", "message"),
    [
        ({"model_processes": 0}, "--model-processes must be >= 1"),
        ({"model_processes": 2, "runner": "ray"}, "--model-processes is for the local runner"),
        ({"model_processes": 2, "engine": "openai", "api_base": "http://127.0.0.1:9/"}, "needs --engine transformers"),
    ],
)
def test_bad_model_processes_settings_are_refused(tmp_path, more, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig([str(tmp_path)], str(tmp_path / "out"), **more).validate()


def test_on_a_gpu_processes_share_it_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    asked = RunConfig([str(tmp_path)], str(tmp_path / "out"), device="cuda", model_processes=3)
    auto = RunConfig([str(tmp_path)], str(tmp_path / "out"), device="cuda")
    assert plan(asked, 6) == (3, 2)
    assert plan(auto, 6) == (1, 6)


def test_model_bytes_counts_shared_weights_once():
    class Holder:
        def __init__(self, model):
            self.model = model

    linear = torch.nn.Linear(10, 10)  # 110 float32 parameters
    assert model_bytes((Holder(linear), Holder(linear), None)) == 110 * 4


def _ended(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (an orphan's parent may be a container's init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_no_helper_outlives_a_run_that_is_stopped(tiny_blip, tiny_clip, tmp_path, stop):
    """Ctrl-C closes the helpers; a run killed outright leaves them a closed pipe, and they end too."""
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(400):
        Image.new("RGB", (48, 48), (index % 256, 40, 90)).save(folder / f"{index:03d}.png")
    command = [str(Path(sys.executable).parent / "capfleet"), "caption", str(folder), "-o", str(tmp_path / "out"),
               "--captioner", str(tiny_blip), "--scorer", str(tiny_clip), "--model-processes", "2", "--threads", "2",
               "--batch-size", "2", "--no-progress", "--device", "cpu"]  # fmt: skip
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    pids = None
    for line in run.stderr:
        found = re.search(r"helper pids (\d+)", line)
        if found:
            pids = [int(found.group(1))]
            break
    assert pids, "the run did not say it started a helper"
    time.sleep(3)  # the helper loads, the run captions
    run.send_signal(stop)
    run.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while not all(_ended(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_ended(pid) for pid in pids), f"helper {pids} still runs after the run was stopped"
    assert run.returncode != 0


@pytest.mark.slow
def test_hygiene_counts_of_helper_batches_are_summed(settings, tmp_path):
    """Every candidate fails --min-words, so every image is sampled again, wherever it was captioned."""
    one = run_caption(settings(tmp_path / "one", min_words=1000, model_processes=1))
    config = settings(tmp_path / "two", min_words=1000, threads=2)
    helpers = ModelProcesses(config, helpers=1, threads=1)
    try:
        helpers.wait_until_ready()
        two = run_caption(config, model_processes=helpers)
    finally:
        helpers.close()
    assert helpers.images > 0
    assert one.stats.hygiene["images_resampled"] == IMAGES
    assert two.stats.hygiene == one.stats.hygiene


def test_a_helper_whose_run_died_while_it_loaded_ends_quietly(settings, tmp_path):
    """A run killed (kill -9, the OOM killer) while its helper loads: the helper's ready word finds no
    reader; it ends without a BrokenPipeError traceback on the user's terminal."""
    helpers = ModelProcesses(settings(tmp_path / "out", threads=2), helpers=1, threads=1)
    helper = helpers.helpers[0]
    helper.connection.close()  # the run is gone
    helper.process.join(timeout=120)
    assert helper.process.exitcode == 0


def test_a_helper_job_carries_pixels_not_the_files_metadata():
    """EXIF, ICC profiles, XMP and PNG text chunks (a generator's workflow) ride along in a decoded image's
    `info`; the helper captions pixels only, so its job leaves them out (the run's image keeps them)."""
    import io
    import pickle

    from PIL import PngImagePlugin

    from capfleet.decoding import DecodingOptions
    from capfleet.runners.candidates import CandidateMaker, CandidateSettings
    from capfleet.runners.model_processes import job
    from capfleet.sample import Item, Sample
    from capfleet.stages.decode import decode_sample
    from capfleet.stages.hygiene import HygieneOptions

    text = PngImagePlugin.PngInfo()
    text.add_text("workflow", "x" * 500_000)
    png = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(png, "PNG", pnginfo=text)
    sample = decode_sample(Sample(Item("k", "s"), data=png.getvalue()), 10**8, 384, 20.0, True)
    maker = CandidateMaker(None, None, CandidateSettings(1, HygieneOptions()), DecodingOptions("sample", 0.9, 10))
    sent = job([sample], [0], maker)
    assert len(pickle.dumps(sent)) < 64 * 48 * 3 + 5_000
    assert sent.samples[0].image.tobytes() == sample.image.tobytes()
    assert "workflow" in sample.image.info  # the run's own sample is left as it was


@pytest.mark.parametrize("asked", [None, 2], ids=["auto", "asked"])
def test_a_run_goes_on_when_the_system_refuses_a_helper_process(
    settings, one_process_rows, tmp_path, caplog, monkeypatch, asked
):
    """fork/spawn fails (EAGAIN: the user's process limit, `ulimit -u`, counts every torch thread): the run
    captions in its own process, with all its threads, instead of failing every shard on the helper's start."""

    def refuse(self):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", refuse)
    monkeypatch.setattr("capfleet.runners.model_processes.WORTH_STARTING_S", 0.0)
    threads = []
    monkeypatch.setattr("capfleet.runners.shard_processor.ShardProcessor._finish",
                        _recording_threads(threads))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="capfleet"):
        summary = run_caption(settings(tmp_path / "out", threads=2, model_processes=asked))
    assert summary.stats.captioned == IMAGES and "failed" not in caplog.text
    assert caplog.text.count("could not start a model process") == 1
    assert set(threads) == {2}  # no helper runs: this process keeps its threads
    assert _rows(tmp_path / "out") == one_process_rows


def _recording_threads(threads: list):
    from capfleet.runners.shard_processor import ShardProcessor

    finish = ShardProcessor._finish

    def record(self, entry, stats):
        threads.append(torch.get_num_threads())
        return finish(self, entry, stats)

    return record


@pytest.mark.slow
def test_when_no_helper_is_left_the_run_takes_back_its_threads(settings, one_process_rows, tmp_path, monkeypatch):
    """A helper that cannot load (or dies: out of memory) leaves the run's process alone: it captions with
    every thread of the run again, not its share (half the cores idle for the rest of the run)."""
    threads = []
    monkeypatch.setattr("capfleet.runners.shard_processor.ShardProcessor._finish", _recording_threads(threads))
    helpers, ready, summary = _with_helper(settings, tmp_path / "out", fail_to_load)
    assert ready == 0 and summary.stats.captioned == IMAGES
    assert set(threads) == {2}
    assert _rows(tmp_path / "out") == one_process_rows
