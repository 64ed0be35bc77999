"""Runners against each other, as whole `capfleet caption` commands on the same machine.

Throughput, on the same scenes and built-in model, in one run (interleaved over --repeats):
  one-process   one plain run, torch threads = the CPUs (2 here)
  two-tasks     --task-index 0/1 --task-count 2, started together, one torch thread each
  ray-2         --runner ray --ray-workers 2: a local Ray cluster the command starts (counted), two actors
Captioning cases load their model inside the timed command, as a user's run would.

The per-shard overhead of each runner (local, --gpus 2 on CPU workers, Beam's Direct runner with
one worker, a task array of two), from model-free runs (`--captioner none`) of one-image shards
against one shard of all images: (run time - the one-shard run's) / extra shards, with run times
from each run's own summary (process and worker start-up, the same for both, left out; two
tasks: the longer).

    python benchmarks/bench_runners.py [--scenes 160] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = ["--captioner", "builtin", "--scorer", "builtin", "--candidates", "5", "--device", "cpu", "--no-progress"]


def caption(images: Path, out: Path, extra: list[str], threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "capfleet.cli", "caption", str(images), "-o", str(out), *extra]
    return subprocess.Popen([*command, "--threads", str(threads)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip


def timed(processes: list[subprocess.Popen]) -> tuple[float, float]:
    """(wall seconds of the whole commands, the longest run time their summaries report)."""
    started, runs = time.perf_counter(), []
    for process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a case failed: {process.args}")
        runs.append(float(re.search(r"^time: ([0-9.]+) s", output, re.M).group(1)))
    return time.perf_counter() - started, max(runs)


def one_process(images: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    return timed([caption(images, out, extra, threads=os.cpu_count() or 1)])


def two_tasks(images: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    tasks = [caption(images, out, [*extra, "--task-index", str(i), "--task-count", "2"], threads=1) for i in (0, 1)]
    return timed(tasks)


def runner(flags: list[str]):
    """A case running one command with the runner `flags` pick."""
    return lambda images, out, extra: one_process(images, out, [*extra, *flags])


def ray_two(images: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """Two Ray actors on a local cluster the command starts itself (its start-up counted)."""
    return timed([caption(images, out, [*extra, "--runner", "ray", "--ray-workers", "2"], threads=1)])


THROUGHPUT = {"one-process": one_process, "two-tasks": two_tasks, "ray-2": ray_two}
OVERHEAD = {
    "local": one_process,
    "gpus-2": runner(["--gpus", "2"]),
    "beam-direct": runner(["--runner", "beam", "--direct_num_workers", "1"]),
    "two-tasks": two_tasks,
    "ray-2": ray_two,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        scenes = work / "scenes"
        subprocess.run([sys.executable, "-m", "capfleet.cli", "synth", str(args.scenes), "-o", str(scenes),
                        "--size", "64"], check=True, capture_output=True)  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in THROUGHPUT}
        overhead: dict[str, list[float]] = {name: [] for name in OVERHEAD}
        for repeat in range(args.repeats):  # interleaved, so a slow spell on a shared machine hits every case
            for name, case in THROUGHPUT.items():
                times[name].append(case(scenes, work / f"{name}-{repeat}", [*MODEL, "--shard-size", "20"])[0])
            for name, case in OVERHEAD.items():
                many = case(scenes, work / f"{name}-many-{repeat}", ["--captioner", "none", "--shard-size", "1"])[1]
                few = case(scenes, work / f"{name}-few-{repeat}", ["--captioner", "none", "--shard-size", "100000"])[1]
                overhead[name].append((many - few) / (args.scenes - 1))
        best = {name: min(values) for name, values in times.items()}
        for name in times:
            print(f"{name:12s} {args.scenes / best[name]:7.1f} images/s (best of {args.repeats}: {best[name]:.1f} s)")
        print(f"two tasks / one process = {best['one-process'] / best['two-tasks']:.2f}x")
        print(f"ray, 2 actors / one process = {best['one-process'] / best['ray-2']:.2f}x")
        for name, values in overhead.items():
            print(f"per-shard overhead {name:12s} {min(values) * 1000:6.1f} ms (best of {args.repeats})")
        print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
