"""A `capfleet train` process killed with SIGKILL between checkpoints, then rerun with the same command,
ends with exactly the weights and the log of a run that was never interrupted."""

from __future__ import annotations

import json
import multiprocessing
import signal
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from capfleet.cli import app

SAVE_EVERY, MAX_STEPS = 3, 12
FLAGS = {"image-size": 32, "batch-size": 8, "lr": 3e-3, "warmup-steps": 3, "log-every": 1, "num-threads": 1}
FLAGS |= {"save-every": SAVE_EVERY, "max-steps": MAX_STEPS, "contrastive-weight": 0.5}


def arguments(data: Path, out: Path) -> list[str]:
    flags = [item for name, value in FLAGS.items() for item in (f"--{name}", str(value))]
    return ["train", str(data), "-o", str(out), *flags, "--no-progress", "--no-plot"]


def run_command(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def logged_steps(out: Path) -> list[int]:
    path = out / "train_log.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("}")]


def checkpoint_steps(out: Path) -> list[int]:
    folder = out / "checkpoints"
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("step-*")) if folder.exists() else []


def kill_between_checkpoints(args: list[str], out: Path) -> None:
    """Run the command in a child process; SIGKILL it once a step past a checkpoint is logged.

    The child is forked, not spawned, so it needs no second import of torch (seconds on a busy box).
    """
    process = multiprocessing.get_context("fork").Process(target=run_command, args=(args,))
    process.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.is_alive():
        steps = logged_steps(out)
        if checkpoint_steps(out) and steps and steps[-1] % SAVE_EVERY:
            process.kill()
            break
        time.sleep(0.002)
    process.join(timeout=60)
    assert process.exitcode == -signal.SIGKILL


def test_sigkill_between_checkpoints_then_resume_equals_an_uninterrupted_run(shapes_dir, tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    kill_between_checkpoints(arguments(shapes_dir, crashed), crashed)
    assert not (crashed / "model.safetensors").exists()
    # The log ran ahead of the newest checkpoint: those steps are redone on resume.
    assert max(checkpoint_steps(crashed)) < logged_steps(crashed)[-1] < MAX_STEPS
    with (crashed / "train_log.jsonl").open("a") as log:
        log.write('{"step": 99, "epo')  # a kill in the middle of a write leaves a torn last line

    run_command(arguments(shapes_dir, crashed))
    run_command(arguments(shapes_dir, straight))

    assert logged_steps(crashed) == list(range(1, MAX_STEPS + 1))
    assert (straight / "train_log.jsonl").read_text() == (crashed / "train_log.jsonl").read_text()
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(crashed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
