"""`capfleet distill`: a teacher's captions, logits and embeddings into a tiny student, through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import capfleet
from capfleet.cli import app
from capfleet.train.distill import DistillConfig, DistillObjective, distill_main, token_match, token_object_kl
from capfleet.train.distributed import launch_local
from capfleet.train.trainer import TrainConfig, train

runner = CliRunner()
STUDENT = ["--preset", "tiny", "--image-size", "32", "--batch-size", "8", "--num-threads", "1", "--no-plot"]
STUDENT += ["--log-every", "1", "--teacher-max-new-tokens", "8", "--teacher-candidates", "2"]


def _distill(data: Path, out: Path, teacher: str, *extra: str):
    return runner.invoke(app, ["distill", str(data), "--teacher", teacher, "-o", str(out), *STUDENT, *extra])


def _summary(output: str) -> dict:
    return json.loads(output[output.rindex('{"model_dir"') :])  # after the progress bars


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_builtin_teacher_into_a_tiny_student_that_loads_and_captions(scenes, tmp_path):
    out = tmp_path / "student"
    result = _distill(scenes, out, "builtin", "--max-steps", "3")
    assert result.exit_code == 0, result.output
    summary = _summary(result.output)
    assert summary["steps"] == 3 and summary["teacher_images"] == 16
    assert summary["kl"].startswith("on") and summary["embeddings"] == "on" and summary["image_tokens"] == "on"
    assert summary["token_objects"] == "on"  # the built-in model has a per-token object head
    rows = _log(out)
    assert [row["step"] for row in rows] == [1, 2, 3]
    for row in rows:
        for term in ("lm_loss", "contrastive_loss", "kl_loss", "embed_loss", "feature_loss", "object_kl"):
            assert math.isfinite(row[term]) and row[term] > 0, (term, row)
    teacher_rows = [json.loads(line) for line in (out / "teacher" / "metadata.jsonl").read_text().splitlines()]
    assert len(teacher_rows) == 16 and all(row["text"] and row["text"] == row["captions"][0] for row in teacher_rows)
    assert all(len(row["captions"]) > 1 for row in teacher_rows)  # the dataset's own captions beside it
    student = capfleet.load(str(out), scorer=str(out), device="cpu")
    captions = student.caption([scenes / "00000" / "000000000.png"], candidates=2, max_new_tokens=6, seed=0)
    assert len(captions) == 1 and len(captions[0].candidates) == 2 and len(captions[0].scores) == 2
    teacher_width = capfleet.load("builtin", scorer="builtin", device="cpu").embed_texts(["a red circle"]).shape[1]
    assert student.embed_texts(["a red circle"]).shape == (1, teacher_width)  # heads sized to the teacher's
    config = json.loads((out / "config.json").read_text())
    assert config["image_size"] == 32  # not the teacher's 64: its 8x8 token grid is pooled onto the student's 4x4
    assert config["feature_distill_dim"] == 128 and config["object_classes"] == 33  # the built-in's width, classes
    assert config["ground_relations"] is True  # like its teacher: the captions above went through the grounding


@pytest.mark.parametrize(
    ("args", "classes"),
    [
        (["--object-weight", "0"], 0),  # no object map to ground them in
        (["--model-overrides", '{"ground_relations": false}'], 33),  # the user's choice wins
    ],
)
def test_a_student_without_grounding_still_distils_and_captions(scenes, tmp_path, args, classes):
    out = tmp_path / "student"
    result = _distill(scenes, out, "builtin", "--max-steps", "1", *args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["object_classes"] == classes and config["ground_relations"] is False
    student = capfleet.load(str(out), scorer=str(out), device="cpu")
    assert len(student.caption([scenes / "00000" / "000000000.png"], candidates=2, max_new_tokens=6, seed=0)) == 1


def test_image_token_matching_pools_a_finer_teacher_grid_onto_the_students():
    teacher = torch.randn(2, 16, 5)  # a 4x4 grid of 5-wide tokens
    pooled = teacher.view(2, 2, 2, 2, 2, 5).mean(dim=(2, 4)).reshape(2, 4, 5)  # each 2x2 block averaged
    assert token_match(pooled, teacher).item() == pytest.approx(0, abs=1e-6)
    assert token_match(pooled.flip(1), teacher).item() > 0.1  # the right tokens, in the wrong places
    assert token_match(teacher, teacher).item() == pytest.approx(0, abs=1e-6)


def test_token_object_kl_is_zero_only_for_the_teachers_own_predictions():
    teacher = torch.randn(2, 16, 7)  # a 4x4 grid, 7 classes
    assert token_object_kl(teacher, teacher).item() == pytest.approx(0, abs=1e-5)
    assert token_object_kl(teacher.flip(1), teacher).item() > 0.1
    # onto a 2x2 student grid: the teacher's probabilities are averaged over each 2x2 block
    probs = teacher.softmax(-1).view(2, 2, 2, 2, 2, 7).mean(dim=(2, 4)).reshape(2, 4, 7)
    assert token_object_kl(probs.log(), teacher).item() == pytest.approx(0, abs=1e-5)


def test_a_rerun_resumes_without_redoing_the_teacher_pass(scenes, tmp_path):
    out = tmp_path / "student"
    first = _distill(scenes, out, "builtin", "--max-steps", "4", "--save-every", "1", "--stop-after", "2")
    assert first.exit_code == 0, first.output
    done = out / "teacher" / "teacher.json"
    stamp = done.stat().st_mtime_ns
    again = _distill(scenes, out, "builtin", "--max-steps", "4", "--save-every", "1")
    assert again.exit_code == 0, again.output
    assert _summary(again.output)["steps"] == 4 and done.stat().st_mtime_ns == stamp
    assert "teacher captions" in first.output and "teacher captions" not in again.output  # the pass's bar
    assert [row["step"] for row in _log(out)] == [1, 2, 3, 4]
    other = _distill(scenes, out, "builtin", "--max-steps", "4", "--teacher-candidates", "3")
    assert other.exit_code == 2 and "other teacher settings (candidates)" in other.output


def test_kl_only_when_the_student_vocabulary_is_within_the_teachers(scenes, tiny_bundle, tmp_path):
    """tiny_bundle's vocabulary knows coloured squares and circles, not synth's captions."""
    mixed = _distill(scenes, tmp_path / "mixed", str(tiny_bundle), "--max-steps", "2")
    assert mixed.exit_code == 0, mixed.output
    assert _summary(mixed.output)["kl"] == "off: the student's vocabulary has words the teacher's lacks"
    assert all("kl_loss" not in row and "embed_loss" in row for row in _log(tmp_path / "mixed"))
    alone = _distill(scenes, tmp_path / "alone", str(tiny_bundle), "--max-steps", "2", "--no-data-captions")
    assert alone.exit_code == 0, alone.output
    assert _summary(alone.output)["kl"].startswith("on")
    assert all(math.isfinite(row["kl_loss"]) for row in _log(tmp_path / "alone"))


def test_a_foreign_teacher_gives_captions_and_embeddings_but_no_kl(scenes, tiny_blip, tiny_clip, tmp_path):
    out = tmp_path / "student"
    result = _distill(scenes, out, str(tiny_blip), "--teacher-scorer", str(tiny_clip), "--max-steps", "2")
    assert result.exit_code == 0, result.output
    summary = _summary(result.output)
    assert summary["kl"].startswith("off: the teacher is not a capfleet model") and summary["embeddings"] == "on"
    assert summary["image_tokens"] == summary["token_objects"] == "off"  # BLIP is not a capfleet teacher
    assert all("kl_loss" not in row and math.isfinite(row["embed_loss"]) for row in _log(out))
    assert all("feature_loss" not in row for row in _log(out))
    config = json.loads((out / "config.json").read_text())
    assert config["projection_dim"] == 16 and config["feature_distill_dim"] == config["object_classes"] == 0
    assert capfleet.load(str(out), device="cpu").caption([scenes / "00000" / "000000001.png"], candidates=1)


def test_two_ddp_processes_match_one(scenes, tmp_path):
    """The extra terms are per-process means, averaged by DDP: 2 x batch 4 == 1 x batch 8."""
    config = DistillConfig(teacher="builtin", teacher_candidates=2, teacher_max_new_tokens=8)
    fast = dict(preset="tiny", image_size=32, max_steps=3, log_every=1, save_every=0, num_threads=1)
    fast.update(progress=False, plot=False, warmup_steps=1)
    distill_main(str(scenes), str(tmp_path / "one"), config, batch_size=8, **fast)
    settings = json.loads((tmp_path / "one" / "train_config.json").read_text())
    two = TrainConfig(**{**settings, "output_dir": str(tmp_path / "two"), "batch_size": 4})
    objective = DistillObjective(str(tmp_path / "one" / "teacher"), str(capfleet_builtin()), config)
    launch_local(train, (two, objective), nprocs=2, start_method="fork", timeout=120)
    one_weights, two_weights = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("one", "two"))
    for key in one_weights:
        # 1e-4: three Adam steps amplify float summation-order noise on near-zero gradients to ~2e-5
        torch.testing.assert_close(two_weights[key], one_weights[key], atol=1e-4, rtol=0, msg=key)
    for a, b in zip(_log(tmp_path / "one"), _log(tmp_path / "two"), strict=True):
        for term in ("kl_loss", "embed_loss", "feature_loss", "object_kl"):
            assert abs(a[term] - b[term]) < 1e-4, term


def capfleet_builtin() -> Path:
    from capfleet.builtin import MODEL_DIR

    return MODEL_DIR


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--teacher", "no-such-model"], "unknown teacher 'no-such-model'"),
        (["--teacher", "builtin", "--teacher-scorer", "none"], "needs a teacher scorer"),
        (["--teacher", "builtin", "--model-overrides", '{"projection_dim": 8}'], "teacher's embedding width 64"),
        (["--teacher", "builtin", "--kl-weight", "-1"], "--kl-weight must be >= 0"),
        (["--teacher", "builtin", "--feature-weight", "-1"], "--feature-weight must be >= 0"),
        (["--teacher", "builtin", "--object-weight", "-1"], "--object-weight must be >= 0"),
        (["--teacher", "builtin", "--teacher-decoding", "greedy"], "--teacher-decoding must be one of"),
        (["--teacher", "builtin", "--preset", "huge"], "--preset must be one of"),
    ],
)
def test_bad_settings_are_one_line_errors(scenes, tmp_path, args, message):
    result = runner.invoke(app, ["distill", str(scenes), "-o", str(tmp_path / "s"), *args, "--max-steps", "1"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_bad_data_is_a_one_line_error(tmp_path):
    missing = runner.invoke(app, ["distill", str(tmp_path / "nope"), "--teacher", "builtin", "-o", str(tmp_path / "s")])
    assert missing.exit_code == 2 and "no such folder" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["distill", str(tmp_path / "empty"), "--teacher", "builtin", "-o", str(tmp_path / "s")])
    assert empty.exit_code == 2 and "no usable images" in empty.output and "Traceback" not in empty.output
    (tmp_path / "file").write_text("x")
    args = ["distill", str(tmp_path / "empty"), "--teacher", "builtin", "-o", str(tmp_path / "file")]
    assert "-o needs a folder" in runner.invoke(app, args).output
