"""Every mistake a new user makes gets exit code 2, one `error:` line and no traceback (issue 8)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from typer.testing import CliRunner

from capfleet.cli import app
from tests.image_zoo import write_noise_images

runner = CliRunner()
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    root = tmp_path_factory.mktemp("mistakes")
    write_noise_images(root / "imgs", 2)
    (root / "empty").mkdir()
    (root / "afile").write_text("not a folder")
    (root / "unfinished" / "checkpoints" / "step-2").mkdir(parents=True)
    result = runner.invoke(app, ["synth", "4", "-o", str(root / "scenes"), "--size", "32"])
    assert result.exit_code == 0, result.output
    return root


def _caption(*options: str) -> list[str]:
    return ["caption", "{root}/imgs", "-o", "{out}", "--captioner", "builtin", "--no-progress", *options]


# (arguments, words the error line must contain); {root} is the fixture folder.
MISTAKES = [
    (_caption("--dtype", "bogus"), "--dtype must be one of"),
    (_caption("--candidates", "0"), "--candidates must be >= 1"),
    (_caption("--runner", "x"), "--runner must be one of local, beam"),
    (_caption("--decoding", "x"), "--decoding must be one of"),
    (_caption("--device", "tpu"), "--device must be one of"),
    (_caption("--top-p", "2"), "--top-p must be in"),
    (_caption("--max-new-tokens", "0"), "--max-new-tokens must be >= 1"),
    (_caption("--batch-size", "0"), "--batch-size must be auto or a whole number >= 1"),
    (_caption("--workers", "0"), "--workers must be >= 1"),
    (_caption("--shard-size", "0"), "--shard-size must be >= 1"),
    (_caption("--limit", "0"), "--limit must be >= 1"),
    (_caption("--max-pixels", "0"), "--max-pixels must be >= 1"),
    (_caption("--shard-retries", "-1"), "--shard-retries must be >= 0"),
    (_caption("--threads", "0"), "--threads must be >= 1"),
    (_caption("--prompt", "a photo of"), "takes no prompt"),
    (_caption("--max-new-tokens", "100"), "--max-new-tokens 100: captioner builtin writes at most 64 tokens"),
    (_caption("--scorer", "./nope"), "no such model folder"),
    (_caption("--captioner", "blipp"), "unknown captioner 'blipp'"),
    (_caption("--captioner", "{root}/unfinished"), "unfinished `capfleet train` run"),
    (_caption("--project=p"), "Beam pipeline options need --runner beam"),
    (_caption("--runner", "beam", "--beam-runner", "Nope"), "--beam-runner Nope"),
    (["caption", "{root}/imgs", "-o", "{root}/afile", "--captioner", "none"], "is a file"),
    (["caption", "{root}/empty", "-o", "{out}", "--captioner", "none"], "nothing to caption in"),
    (["caption", "{root}/nope", "-o", "{out}", "--captioner", "none"], "input not found"),
    (["merge", "{root}/imgs"], "is not a capfleet caption output"),
    (["merge", "{root}/afile"], "is a file"),
    (["merge", "{root}/nope"], "no such output folder"),
    (["eval", "{root}/imgs"], "exactly one of"),
    (["synth", "3", "-o", "{root}/afile"], "is a file"),
    (["synth", "3", "-o", "{out}", "--shard-size", "0"], "shard"),
    (["synth", "0", "-o", "{out}"], "at least 1"),
    (["list", "{root}/nope"], "input not found"),
    (["eval", "{root}/scenes", "--predictions", "{root}/nope"], "nope"),
    (["train", "{root}/scenes", "-o", "{out}", "--preset", "huge"], "--preset must be one of tiny, small, base"),
    (["train", "{root}/scenes", "-o", "{out}", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["train", "{root}/scenes", "-o", "{out}", "--grad-accum", "0"], "--grad-accum must be >= 1"),
    (["train", "{root}/scenes", "-o", "{out}", "--max-steps", "0"], "--max-steps must be >= 1"),
    (["train", "{root}/scenes", "-o", "{out}", "--mixed-precision", "fp8"], "--mixed-precision must be one of"),
    (["train", "{root}/scenes", "-o", "{root}/afile"], "is a file"),
    (["train", "{root}/scenes", "-o", "{out}", "--caption-mode", "bogus"], "--caption-mode must be one of text, all"),
    (["train", "{root}/scenes", "-o", "{out}", "--nproc", "2", "--image-size", "30"], "not divisible by patch_size"),
    (["train", "{root}/scenes", "-o", "{out}", "--model-overrides", "notjson"], "--model-overrides must be"),
    (["train", "{root}/nope", "-o", "{out}"], "no usable samples"),
]
CUDA_MISTAKES = [
    (_caption("--device", "cuda"), "no CUDA GPU is visible"),
    (["eval", "{root}/scenes", "--model", "builtin", "--device", "cuda", "--no-meteor"], "no CUDA GPU is visible"),
    (["train", "{root}/scenes", "-o", "{out}", "--device", "cuda", "--batch-size", "2"], "no CUDA GPU is visible"),
]


def _invoke(place, tmp_path, args: list[str]):
    return runner.invoke(app, [arg.format(root=place, out=tmp_path / "out") for arg in args])


def _one_error_line(place, tmp_path, args: list[str], expected: str) -> None:
    result = _invoke(place, tmp_path, args)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and expected in errors[0], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("args", "expected"), MISTAKES, ids=[" ".join(a).replace("{root}/", "") for a, _ in MISTAKES])
def test_a_wrong_value_is_one_error_line(place, tmp_path, args, expected):
    _one_error_line(place, tmp_path, args, expected)


@NO_CUDA
@pytest.mark.parametrize(("args", "expected"), CUDA_MISTAKES, ids=[a[0] for a, _ in CUDA_MISTAKES])
def test_asking_for_cuda_without_a_gpu_is_one_error_line(place, tmp_path, args, expected):
    _one_error_line(place, tmp_path, args, expected)


@pytest.mark.parametrize("args", [_caption("--candidates", "abc"), ["train", "x", "--max-steps", "many"]])
def test_an_unparsable_value_is_a_usage_error_not_a_traceback(place, tmp_path, args):
    result = _invoke(place, tmp_path, args)
    assert result.exit_code == 2 and "Invalid value" in result.output and "Traceback" not in result.output


def test_an_empty_input_writes_nothing(place):
    result = runner.invoke(app, ["caption", str(place / "empty"), "-o", str(place / "never"), "--captioner", "none"])
    assert result.exit_code == 2 and f"nothing to caption in {place / 'empty'}" in result.output
    assert not (place / "never").exists()


def test_merge_refuses_a_folder_that_is_not_a_capfleet_output(place):
    result = runner.invoke(app, ["merge", str(place / "imgs")])
    assert result.exit_code == 2
    assert not (place / "imgs" / "captions.jsonl").exists()


def test_a_misspelt_beam_runner_leaves_the_output_untouched(place):
    args = ["caption", str(place / "imgs"), "-o", str(place / "beam-out"), "--captioner", "none"]
    result = runner.invoke(app, [*args, "--runner", "beam", "--beam-runner", "Nope"])
    assert result.exit_code == 2 and not (place / "beam-out").exists()


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed here")
def test_a_missing_cloud_backend_names_its_own_extra(tmp_path):
    result = runner.invoke(app, ["caption", "s3://bucket/photos", "-o", str(tmp_path / "out"), "--captioner", "none"])
    assert result.exit_code == 2 and "pip install 'capfleet[s3]'" in result.output
