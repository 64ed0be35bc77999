"""--gpus N: one engine per worker process, shards divided, the same rows as one process.

Run on CPU here (two workers, the built-in model); on a GPU machine each worker sees one GPU.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from capfleet import plugins
from capfleet.cli import app
from capfleet.config import RunConfig
from capfleet.models.engines import vllm_offline
from capfleet.runners.data_parallel import visible_devices
from tests.pipeline.helpers import read_rows

runner = CliRunner()


@pytest.mark.slow  # two spawned worker processes each import torch: ~30 s on 2 cores
def test_two_workers_write_what_one_process_writes(tmp_path):
    assert runner.invoke(app, ["synth", "10", "-o", str(tmp_path / "scenes"), "--size", "64"]).exit_code == 0
    base = ["caption", str(tmp_path / "scenes"), "--captioner", "builtin", "--scorer", "builtin", "--no-progress"]
    base += ["--shard-size", "3", "--candidates", "2", "--device", "cpu"]
    one = runner.invoke(app, [*base, "-o", str(tmp_path / "one")])
    two = runner.invoke(app, [*base, "-o", str(tmp_path / "two"), "--gpus", "2"])
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    assert "seen: 10  captioned: 10  failed: 0" in two.output
    rows_one, rows_two = read_rows(tmp_path / "one"), read_rows(tmp_path / "two")
    assert [(r["key"], r["candidates"]) for r in rows_one] == [(r["key"], r["candidates"]) for r in rows_two]
    markers = sorted((tmp_path / "two" / "_capfleet" / "completions").glob("*.json"))
    assert [json.loads(m.read_text())["seen"] for m in markers] == [3, 3, 3, 1]
    # Resuming a finished run does nothing; --gpus is not part of the run's settings.
    again = runner.invoke(app, [*base, "-o", str(tmp_path / "two")])
    assert again.exit_code == 0 and "4 already done" in again.output


def test_gpus_with_beam_is_refused(tmp_path):
    args = ["caption", str(tmp_path), "-o", str(tmp_path / "o"), "--gpus", "2", "--runner", "beam"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--gpus is for the local runner" in result.output


def test_each_worker_sees_its_own_gpus():
    assert [visible_devices(worker, 1) for worker in range(3)] == ["0", "1", "2"]
    assert [visible_devices(worker, 2) for worker in range(2)] == ["0,1", "2,3"]


def test_each_engine_says_how_many_gpus_one_worker_spans(tmp_path):
    def spans(**settings):
        config = RunConfig([str(tmp_path)], str(tmp_path / "out"), **settings)
        return plugins.find("engine", config.engine).gpus_per_worker(config)

    vllm = RunConfig([str(tmp_path)], str(tmp_path / "out"), engine="vllm", tensor_parallel_size=4)
    assert vllm_offline.gpus_per_worker(vllm) == 4  # the module itself: find() wants vLLM installed
    assert spans(engine="transformers", tensor_parallel_size=4) == 1  # vLLM's setting means nothing here
    assert spans(engine="openai", api_base="http://127.0.0.1:9/v1") == 1
