"""Training's numbers are pinned: the per-step losses and learning rates of two tiny deterministic runs, as
main (c0877ab) logged them before the trainer was split into setup / step / checkpoint functions (issue 23), kept in
tests/fixtures/pinned_training_logs.json. A change to what training computes (loss scaling, clipping,
scheduler order, data position or RNG on resume, the object or hard-negative terms) moves them far more
than the tolerance, which only absorbs float rounding on another CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capfleet.train.trainer import TrainConfig, train
from tests.train.test_trainer import FAST

PINNED = json.loads((Path(__file__).parents[1] / "fixtures" / "pinned_training_logs.json").read_text())
COMMON = {**FAST, "warmup_steps": 2, "hard_negatives": True}
KEYS = ("loss", "lm_loss", "contrastive_loss", "object_loss", "held_out_loss", "lr")


def _assert_logged_as_pinned(out: Path, pinned: list[dict]) -> None:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    got = [{"step": r["step"], **{k: r[k] for k in KEYS if k in r}} for r in rows]
    assert [r.keys() for r in got] == [r.keys() for r in pinned]
    for row, want in zip(got, pinned, strict=True):
        assert row == pytest.approx(want, rel=1e-4, abs=1e-6), row["step"]


def test_a_stopped_and_resumed_run_with_accumulation_and_held_out_loss_logs_the_pinned_losses(shapes_dir, tmp_path):
    out = tmp_path / "m"
    kw = dict(data_dir=str(shapes_dir), output_dir=str(out), **COMMON, grad_accum=2, max_steps=6)
    kw.update(held_out_fraction=0.25, eval_every=3)
    assert train(TrainConfig(**kw, stop_after=3)).stopped_early
    assert train(TrainConfig(**kw)).resumed_from == 3
    _assert_logged_as_pinned(out, PINNED["shapes"])


def test_a_run_with_object_relations_relation_negatives_and_memory_positions_logs_the_pinned_losses(scenes, tmp_path):
    kw = dict(object_loss_weight=1.0, object_relations=True, relation_negatives=True, max_steps=4)
    kw.update(model_overrides={"stem": "conv", "position_init": "sincos", "memory_positions": True})
    train(TrainConfig(data_dir=str(scenes), output_dir=str(tmp_path / "m"), **COMMON, **kw))
    _assert_logged_as_pinned(tmp_path / "m", PINNED["scenes"])
