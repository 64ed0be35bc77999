"""The Beam runner (Direct runner, offline) against the local runner on the same input."""

from __future__ import annotations

import pytest

pytest.importorskip("apache_beam")

from capfleet.config import RunConfig  # noqa: E402
from capfleet.runners import shard_processor  # noqa: E402
from capfleet.runners.beam import pipeline_options, run_beam  # noqa: E402
from capfleet.runners.lifecycle import run_caption  # noqa: E402
from tests.image_zoo import OK, write_noise_images, write_zoo  # noqa: E402
from tests.pipeline.helpers import read_errors, read_rows  # noqa: E402


def config(inputs, out, **overrides) -> RunConfig:
    values = {"captioner": "none", "scorer": "none", "shard_size": 3, "workers": 2, "progress": False}
    values.update(overrides)
    return RunConfig(inputs=[str(i) for i in inputs], output=str(out), **values)


def _comparable(rows: list[dict]) -> list[tuple]:
    return sorted((r["key"], r["file_name"], r["text"], tuple(r["candidates"])) for r in rows)


def test_beam_and_local_write_the_same_rows(tmp_path, tiny_blip, tiny_clip):
    write_noise_images(tmp_path / "imgs", 7)
    models = {"captioner": str(tiny_blip), "scorer": str(tiny_clip), "candidates": 3, "max_new_tokens": 5}
    local = run_caption(config([tmp_path / "imgs"], tmp_path / "local", **models))
    beam = run_beam(config([tmp_path / "imgs"], tmp_path / "beam", **models))
    assert _comparable(read_rows(tmp_path / "local")) == _comparable(read_rows(tmp_path / "beam"))
    for a, b in zip(
        sorted(read_rows(tmp_path / "local"), key=lambda r: r["key"]),
        sorted(read_rows(tmp_path / "beam"), key=lambda r: r["key"]),
        strict=True,
    ):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
    assert (beam.stats.seen, beam.stats.captioned, beam.shards) == (local.stats.seen, local.stats.captioned, 3)


def test_two_worker_processes_write_the_same_rows(tmp_path, tiny_blip):
    """Each worker process loads its own captioner; sampled rows still equal the local run's."""
    write_noise_images(tmp_path / "imgs", 8)
    models = {"captioner": str(tiny_blip), "candidates": 3, "max_new_tokens": 5, "batch_size": 2}
    run_caption(config([tmp_path / "imgs"], tmp_path / "local", **models))
    args = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    summary = run_beam(config([tmp_path / "imgs"], tmp_path / "beam", **{**models, "batch_size": 3}), args)
    local_rows = _comparable(read_rows(tmp_path / "local"))
    assert len(local_rows) == 8 and all(candidates for *_, candidates in local_rows)
    assert _comparable(read_rows(tmp_path / "beam")) == local_rows
    assert {row["captioner"] for row in read_rows(tmp_path / "beam")} == {str(tiny_blip)}
    assert summary.stats.captioned == 8  # metrics from both worker processes


def test_a_shard_failing_once_is_retried_without_duplicates(tmp_path, monkeypatch):
    write_noise_images(tmp_path / "imgs", 6)
    real = shard_processor.ShardProcessor._caption
    failed = []

    def fail_once(self, batch):
        if batch[0].key == "000000004" and not failed:
            failed.append(batch[0].key)
            raise RuntimeError("worker preempted")
        return real(self, batch)

    monkeypatch.setattr(shard_processor.ShardProcessor, "_caption", fail_once)
    run_beam(config([tmp_path / "imgs"], tmp_path / "out", batch_size=1))
    assert failed == ["000000004"]
    assert sorted(row["key"] for row in read_rows(tmp_path / "out")) == [f"{i:09d}" for i in range(6)]


def test_bad_images_become_error_records(tmp_path):
    expected = write_zoo(tmp_path / "zoo")
    summary = run_beam(config([tmp_path / "zoo"], tmp_path / "out", shard_size=5))
    errors = read_errors(tmp_path / "out")
    assert len(errors) == sum(outcome != OK for outcome in expected.values())
    assert len(read_rows(tmp_path / "out")) == sum(outcome == OK for outcome in expected.values())
    assert summary.stats.failed == len(errors)


def test_rerun_skips_finished_shards(tmp_path):
    write_noise_images(tmp_path / "imgs", 7)
    run_beam(config([tmp_path / "imgs"], tmp_path / "out", limit=4))
    summary = run_beam(config([tmp_path / "imgs"], tmp_path / "out"))
    assert summary.shards_done_before == 1 and summary.skipped == 3
    assert sorted(row["key"] for row in read_rows(tmp_path / "out")) == [f"{i:09d}" for i in range(7)]


def test_dataflow_with_a_local_output_is_refused_before_any_work(tmp_path):
    from capfleet.config import ConfigError

    with pytest.raises(ConfigError, match="gs://"):
        run_beam(config([tmp_path], tmp_path / "out"), ["--project=p"], "DataflowRunner")
    assert not (tmp_path / "out").exists()


def test_direct_runner_never_needs_a_download():
    options = pipeline_options([], "DirectRunner").get_all_options()
    assert options["runner"] == "FnApiRunner"  # DirectRunner would first try to fetch Prism
    assert pipeline_options(["--project=p"], "DataflowRunner").get_all_options()["project"] == "p"


def test_tar_and_parquet_inputs_and_outputs_give_the_same_rows_on_beam_and_local(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from capfleet.merge import merge_shards
    from tests.sources.tar_zoo import jpeg, write_tar

    for part in range(2):
        members = [(f"k{i}.jpg", jpeg(part * 5 + i)) for i in range(3)] + [("k0.txt", b"first")]
        write_tar(tmp_path / "in" / f"p-{part}.tar", members)
    pq.write_table(pa.table({"image": [jpeg(i) for i in range(5)]}), tmp_path / "t.parquet", row_group_size=2)
    cases = [(f"{tmp_path}/in/p-{{0..1}}.tar", "webdataset"), (str(tmp_path / "t.parquet"), "parquet")]
    for spec, output_format in cases:
        merged = {}
        for runner, run in (("local", run_caption), ("beam", run_beam)):
            out = tmp_path / f"{output_format}-{runner}"
            run(config([spec], out, format=output_format))
            target, _ = merge_shards(out)
            merged[runner] = sorted(target.read_text().splitlines())
        assert merged["local"] == merged["beam"] and len(merged["local"]) in (6, 5)


def test_beam_options_given_the_beam_way_are_not_taken_for_inputs(tmp_path):
    from typer.testing import CliRunner

    from capfleet.cli import app
    from capfleet.runners.beam import split_beam_options

    tokens = ["imgs", "--direct_num_workers", "2", "--save_main_session", "more", "--experiments=a,b", "--x=1"]
    assert split_beam_options(tokens) == (
        ["imgs", "more"],
        ["--direct_num_workers", "2", "--save_main_session", "--experiments=a,b", "--x=1"],
    )
    write_noise_images(tmp_path / "imgs", 3)
    command = ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--captioner", "none"]
    result = CliRunner().invoke(app, [*command, "--runner", "beam", "--direct_num_workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(read_rows(tmp_path / "out")) == 3
