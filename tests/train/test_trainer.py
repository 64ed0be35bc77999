"""End-to-end training on tiny coloured-shape images: learning, exact resume, DDP equivalence, outputs."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

from capfleet.train.distributed import launch_local
from capfleet.train.tokenization import load_bundle
from capfleet.train.trainer import TrainConfig, train
from tests.train.helpers import draw
from tests.train.test_data import make_bad_dataset

FAST = dict(
    image_size=32,
    batch_size=8,
    lr=3e-3,
    warmup_steps=3,
    log_every=1,
    save_every=0,
    progress=False,
    num_threads=1,
    plot=False,
    contrastive_weight=0.5,
)


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


def test_loss_falls_and_output_is_a_loadable_bundle(shapes_dir, tmp_path):
    out = tmp_path / "model"
    cfg = TrainConfig(
        data_dir=str(shapes_dir),
        output_dir=str(out),
        **{**FAST, "plot": True, "progress": True},
        max_steps=60,
        held_out_fraction=0.2,
        eval_every=30,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(cfg)
    log = _log(out)
    assert result.steps == 60 and log[-1]["step"] == 60 and result.samples < 32
    assert log[-1]["loss"] < 0.5 * log[0]["loss"] and log[-1]["lm_loss"] < 1.0
    assert result.held_out_loss is not None and result.held_out_loss < log[0]["lm_loss"]
    if importlib.util.find_spec("matplotlib"):
        assert result.plot_path == out / "loss.png" and result.plot_path.stat().st_size > 0
    else:
        assert result.plot_path is None and any("matplotlib" in str(w.message) for w in caught)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (out / name).is_file()
    model, tok, proc = load_bundle(out)
    px = proc(images=[draw("red", "square", 32, 0)], return_tensors="pt")["pixel_values"]
    caption = tok.batch_decode(model.eval().generate(pixel_values=px, max_new_tokens=8), skip_special_tokens=True)
    assert caption[0].startswith("a ")


def test_resume_is_bit_identical(shapes_dir, tmp_path):
    kw = dict(data_dir=str(shapes_dir), **{**FAST, "save_every": 5}, grad_accum=2, max_steps=12)
    straight = train(TrainConfig(output_dir=str(tmp_path / "a"), **kw))
    first = train(TrainConfig(output_dir=str(tmp_path / "b"), stop_after=7, **kw))
    assert first.stopped_early and not (tmp_path / "b" / "model.safetensors").exists()
    resumed = train(TrainConfig(output_dir=str(tmp_path / "b"), **kw))
    assert resumed.resumed_from == 7 and resumed.steps == straight.steps == 12
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _log(tmp_path / "a") == _log(tmp_path / "b")  # same losses and learning rates, step by step
    ckpts = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert ckpts == ["step-00000007", "step-00000010"]  # keep_checkpoints=2


def test_ddp_two_processes_match_one(shapes_dir, tmp_path):
    """2 gloo processes x batch 4 == 1 process x batch 8, within float summation noise (atol 1e-5)."""
    kw = dict(data_dir=str(shapes_dir), **FAST, max_steps=6)
    train(TrainConfig(output_dir=str(tmp_path / "one"), **kw))
    two_cfg = TrainConfig(output_dir=str(tmp_path / "two"), **{**kw, "batch_size": 4})
    # fork (CPU only, 1 intra-op thread) skips re-importing torch in the children; the timeout turns a hang
    # into a failure
    launch_local(train, (two_cfg,), nprocs=2, start_method="fork", timeout=120)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=0, msg=key)
    for a, b in zip(_log(tmp_path / "one"), _log(tmp_path / "two"), strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-4 and a["lr"] == b["lr"]


def test_training_skips_and_counts_bad_samples(tmp_path):
    data = make_bad_dataset(tmp_path / "bad")
    result = train(
        TrainConfig(
            data_dir=str(data),
            output_dir=str(tmp_path / "m"),
            **{**FAST, "image_size": 16},
            max_steps=2,
            preset="tiny",
            model_overrides={"patch_size": 4},
        )
    )
    assert result.steps == 2 and result.samples == 8
    assert result.skipped == {"missing_image": 1, "empty_caption": 2, "unreadable_image": 1, "bad_row": 2}
    assert json.loads((tmp_path / "m" / "train_result.json").read_text())["skipped"] == result.skipped


def test_module_entry_point(shapes_dir, tmp_path, capsys):
    """``python -m capfleet.train DATA -o DIR --flags`` (what torchrun runs) maps flags onto TrainConfig."""
    from capfleet.train.__main__ import main

    argv = [str(shapes_dir), "-o", str(tmp_path / "m"), "--image-size", "32", "--batch-size", "8"]
    main([*argv, "--max-steps", "3", "--no-progress", "--no-plot", "--num-threads", "1", "--save-every", "0"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and (tmp_path / "m" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "m" / "train_config.json").read_text())["batch_size"] == 8
