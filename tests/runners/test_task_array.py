"""Task arrays: N real processes write into one OUT, each its own shards; bad settings are one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.io.location import Location
from capfleet.runners.lock import RunLock
from capfleet.runners.task_array import task_from_environment
from tests.http_server import serve_folder
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import read_rows

runner = CliRunner()
NONE = ["--captioner", "none", "--shard-size", "2", "--workers", "2", "--no-progress"]
WAIT_S = 120  # only a broken build waits this long


def _task_command(inputs: Path, out: Path, index: int, count: int) -> list[str]:
    command = [sys.executable, "-m", "capfleet.cli", "caption", str(inputs), "-o", str(out), *NONE]
    return [*command, "--task-index", str(index), "--task-count", str(count)]


def _keys(out: Path) -> Counter:
    return Counter(row["key"] for row in read_rows(out))


def test_three_tasks_started_in_the_same_second_write_every_row_once(tmp_path):
    write_noise_images(tmp_path / "imgs", 11)
    out = tmp_path / "out"
    tasks = [subprocess.Popen(_task_command(tmp_path / "imgs", out, i, 3), stderr=subprocess.PIPE, text=True)
             for i in range(3)]  # fmt: skip
    logs = [task.communicate(timeout=WAIT_S)[1] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0, 0], logs
    assert _keys(out) == Counter({f"{i:09d}": 1 for i in range(11)})  # every image once, none twice
    for index, log in enumerate(logs):  # 6 shards: two each
        assert f"task {index} of 3" in log
    stored = json.loads((out / "_capfleet" / "run.json").read_text())
    assert stored["tasks"] == 3
    status = runner.invoke(app, ["status", str(out)])
    assert status.exit_code == 0 and "shards: 6  done: 6  missing: 0" in status.output


def test_a_plain_run_and_tasks_share_the_shards_by_number(tmp_path):
    write_noise_images(tmp_path / "imgs", 8)
    out = tmp_path / "out"
    result = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-o", str(out), *NONE, "--task-index", "1",
                                 "--task-count", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "shards: 2 of 4, task 1 of 2's share" in result.output
    assert sorted(p.name for p in out.iterdir() if p.name != "_capfleet") == ["00001", "00003"]
    status = runner.invoke(app, ["status", str(out)])
    assert status.exit_code == 1
    assert "missing 00000 (task 0 of 2)" in status.output and "missing 00002 (task 0 of 2)" in status.output
    plain = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-o", str(out), *NONE])  # finishes the rest
    assert plain.exit_code == 0 and "(2 already done)" in plain.output, plain.output
    assert _keys(out) == Counter({f"{i:09d}": 1 for i in range(8)})


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (["--task-index", "3", "--task-count", "3"], {}, "--task-index must be in 0 .. 2 (--task-count 3), not 3"),
        (["--task-count", "3"], {}, "--task-count needs --task-index"),
        ([], {"JOB_COMPLETION_INDEX": "2"}, "pass --task-count COMPLETIONS"),
        ([], {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}, "cannot read the SLURM array"),
        (["--task-index", "0", "--task-count", "2", "--overwrite"], {}, "--overwrite cannot be given to a task array"),
        (["--task-index", "0", "--task-count", "2", "--dedup", "exact"], {}, "--dedup needs every shard hashed"),
        (["--task-index", "0", "--task-count", "2", "--runner", "beam"], {}, "task arrays run capfleet's own runners"),
    ],
)
def test_bad_task_settings_are_one_line_and_write_nothing(tmp_path, flags, env, message):
    write_noise_images(tmp_path / "imgs", 2)
    result = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), *NONE, *flags],
                           env=env)  # fmt: skip
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_changed_task_count_is_refused(tmp_path):
    write_noise_images(tmp_path / "imgs", 4)
    base = ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), *NONE]
    assert runner.invoke(app, [*base, "--task-index", "0", "--task-count", "2"]).exit_code == 0
    changed = runner.invoke(app, [*base, "--task-index", "0", "--task-count", "3"])
    assert changed.exit_code == 2 and "task array of 2 tasks, not 3: rerun with --task-count 2" in changed.output


def test_two_copies_of_one_task_are_refused_and_other_tasks_run(tmp_path):
    write_noise_images(tmp_path / "imgs", 4)
    out = tmp_path / "out"
    base = ["caption", str(tmp_path / "imgs"), "-o", str(out), *NONE, "--task-count", "2"]
    assert runner.invoke(app, [*base, "--task-index", "0"]).exit_code == 0  # the run exists now
    location = Location(out)
    with RunLock(location, lock_file="_capfleet/tasks/1.lock", shared_run_lock=True):  # task 1 is running
        twin = runner.invoke(app, [*base, "--task-index", "1"])
        assert twin.exit_code == 2 and "another capfleet run" in twin.output, twin.output
        other = runner.invoke(app, [*base, "--task-index", "0"])
        assert other.exit_code == 0, other.output
        plain = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-o", str(out), *NONE])
        assert plain.exit_code == 2 and "task array" in plain.output, plain.output  # never beside the tasks
    assert runner.invoke(app, [*base, "--task-index", "1"]).exit_code == 0


def test_tasks_take_their_index_from_slurm_and_kubernetes(tmp_path):
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "2"}
    assert task_from_environment(None, None, slurm)[:2] == (1, 2)
    assert task_from_environment(None, 3, {"JOB_COMPLETION_INDEX": "2"})[:2] == (2, 3)
    assert task_from_environment(0, 2, slurm)[:2] == (0, 2)  # flags win
    write_noise_images(tmp_path / "imgs", 4)
    result = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), *NONE], env=slurm)
    assert result.exit_code == 0 and "task 1 of 2 (from SLURM_ARRAY_TASK_ID" in result.output, result.output


def test_a_task_killed_mid_shard_and_rerun_leaves_every_row_once(tmp_path):
    release, reading = threading.Event(), threading.Event()

    def gate(path: str) -> None:
        if path.rsplit("/", 1)[-1] not in ("img-000.jpg", "img-001.jpg"):
            reading.set()
            release.wait(WAIT_S)  # task 0's second shard stays in flight until the kill

    names = [path.name for path in write_noise_images(tmp_path / "imgs", 8)]
    out = tmp_path / "out"
    with serve_folder(tmp_path / "imgs", gate) as base:
        (tmp_path / "list.txt").write_text("".join(f"{base}/{name}\n" for name in names))
        task0 = subprocess.Popen(_task_command(tmp_path / "list.txt", out, 0, 2), stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT_S
        while not (out / "_capfleet" / "completions" / "00000.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reading.wait(WAIT_S)  # shard 00002 is being read now
        task0.send_signal(signal.SIGKILL)
        task0.wait(timeout=30)
        release.set()
        task1 = subprocess.run(_task_command(tmp_path / "list.txt", out, 1, 2), capture_output=True, timeout=WAIT_S)
        assert task1.returncode == 0, task1.stderr
        status = runner.invoke(app, ["status", str(out)])
        assert status.exit_code == 1 and "missing 00002 (task 0 of 2)" in status.output
        again = subprocess.run(_task_command(tmp_path / "list.txt", out, 0, 2), capture_output=True, timeout=WAIT_S)
        assert again.returncode == 0, again.stderr
    assert _keys(out) == Counter({f"{i:09d}": 1 for i in range(8)})
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]  # the killed attempt's staging is gone
    assert runner.invoke(app, ["status", str(out)]).exit_code == 0


def test_a_plain_run_holding_out_refuses_every_task(tmp_path):
    write_noise_images(tmp_path / "imgs", 2)
    with RunLock(Location(tmp_path / "out")):
        task = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), *NONE,
                                   "--task-index", "0", "--task-count", "2"])  # fmt: skip
    assert task.exit_code == 2 and "another capfleet run" in task.output


def test_on_an_object_store_a_dead_tasks_lease_is_taken_over_and_a_live_one_refuses(tmp_path):
    write_noise_images(tmp_path / "imgs", 4)
    url = "memory://task-leases/out"
    base = ["caption", str(tmp_path / "imgs"), "-o", url, *NONE, "--task-count", "2"]
    location = Location(url)
    alive = {"owner": "host-b pid 9 feedbeef", "expires": time.time() + 600, "ttl_s": 600}
    location.write_json("_capfleet/tasks/1.lease.json", alive)
    busy = runner.invoke(app, [*base, "--task-index", "1"])
    assert busy.exit_code == 2 and "host-b pid 9" in busy.output  # a second copy of a running task
    plain = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-o", url, *NONE])
    assert plain.exit_code == 2 and "host-b pid 9" in plain.output  # never beside the tasks
    location.write_json("_capfleet/tasks/1.lease.json", {**alive, "expires": time.time() - 1})  # its host died
    taken = runner.invoke(app, [*base, "--task-index", "1"])
    assert taken.exit_code == 0, taken.output
    assert not location.exists("_capfleet/tasks/1.lease.json")  # released at the end
