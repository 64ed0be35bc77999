"""The openai engine against `capfleet serve` on loopback vs the transformers engine in-process.

    python benchmarks/bench_engines.py [--scenes 200] [--candidates 5] [--concurrency 8]

Needs `capfleet serve` (issue 11 / the `serve` extra). Draws scenes, starts
`capfleet serve --captioner builtin --scorer builtin` on 127.0.0.1, then captions the same
scenes twice in one run of this script: `--engine openai` through the server (images sent as
data URLs, `--concurrency` requests in flight) and `--engine transformers` in this process,
both ranked by the built-in scorer here. Prints images/s of each whole run and their ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from capfleet.config import RunConfig
from capfleet.runners.lifecycle import run_caption
from capfleet.synth import generate_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]


def start_server(port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "capfleet.cli", "serve", "--captioner", "builtin", "--scorer", "builtin"]
    server = subprocess.Popen([*command, "--port", str(port)], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    for _ in range(600):
        if server.poll() is not None:
            sys.exit(f"capfleet serve exited:\n{log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    sys.exit("capfleet serve did not start within 2 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if importlib.util.find_spec("capfleet.serve") is None:
        sys.exit("needs capfleet serve (issue 11): run this after it is merged")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        generate_synthetic_dataset(args.scenes, work / "scenes", seed=3, size=64)
        server = start_server(args.port, work / "serve.log")
        try:
            common = dict(inputs=[str(work / "scenes")], captioner="builtin", scorer="builtin", progress=False)
            common.update(candidates=args.candidates, batch_size=max(8, args.concurrency), shard_size=1000)
            api_base = f"http://127.0.0.1:{args.port}/v1"
            remote = RunConfig(output=str(work / "openai"), engine="openai", api_base=api_base, **common)
            remote.concurrency = args.concurrency
            results = {
                "openai engine -> capfleet serve (loopback)": run_caption(remote),
                "transformers engine, in-process": run_caption(RunConfig(output=str(work / "local"), **common)),
            }
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{args.scenes} scenes, {args.candidates} candidates, built-in model and scorer, {os.cpu_count()} cores")
    print("| engine | images/s | failed |")
    print("| --- | ---: | ---: |")
    for name, summary in results.items():
        print(f"| {name} | {summary.images_per_second:.1f} | {summary.stats.failed} |")
    rates = [summary.images_per_second for summary in results.values()]
    print(f"openai / transformers: {rates[0] / rates[1]:.2f}x")


if __name__ == "__main__":
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    main()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
