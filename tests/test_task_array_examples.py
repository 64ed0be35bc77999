"""The SLURM and Kubernetes examples in docs/examples parse, and every capfleet option they use exists."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import yaml

from tests.test_readme import _options

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def _check_caption_command(words: list[str]) -> None:
    assert words[:2] == ["capfleet", "caption"], words
    unknown = [word for word in words if word.startswith("--") and word not in _options("caption")]
    assert not unknown, unknown


def test_the_sbatch_example_is_valid_bash_and_takes_its_index_from_slurm():
    script = EXAMPLES / "capfleet-array.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "#SBATCH --array=" in text
    command = text.replace("\\\n", " ")
    [line] = [line for line in command.splitlines() if line.strip().startswith("capfleet caption")]
    words = shlex.split(line)
    _check_caption_command(words)
    assert "--task-index" not in words and "--task-count" not in words  # SLURM's variables give both


def test_the_indexed_job_example_matches_its_task_count():
    job = yaml.safe_load((EXAMPLES / "capfleet-indexed-job.yaml").read_text())
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["template"]["spec"]["restartPolicy"] == "Never"
    [container] = spec["template"]["spec"]["containers"]
    words = [str(word) for word in container["command"]]
    _check_caption_command(words)
    assert words[words.index("--task-count") + 1] == str(spec["completions"])  # JOB_COMPLETION_INDEX < completions
