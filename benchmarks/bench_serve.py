"""`capfleet serve` under load: what dynamic batching buys, latency, and a soak for errors and memory.

    python benchmarks/bench_serve.py [--requests 48] [--repeats 3] [--clients 8] [--soak 1000] [--candidates 5]

Starts `capfleet serve --captioner builtin --scorer builtin` in its own process on a free loopback
port, then sends one-image /v1/caption uploads (synthetic scenes) with the stdlib client:
  * sequential: `--requests` requests one at a time (each is its own model call);
  * concurrent: the same requests from `--clients` threads (the server batches them);
    the two cases alternate `--repeats` times and the table sums them;
  * soak: `--soak` requests from `--clients` threads; errors counted, the server's RSS read from
    /proc before (after warm-up) and after.
Prints a table: requests/s, p50/p95 latency, mean images per model call, and the throughput gain
(goal >= 2x), beside the ceiling: the same model called directly at batch 1 and at batch
`--clients`. Also the load average, since a shared machine's neighbours move the numbers.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from capfleet.serve.client import ServiceClient
from capfleet.synth import generate_synthetic_dataset


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def start_server(port: int, args) -> subprocess.Popen:
    command = [sys.executable, "-m", "capfleet.cli", "serve", "--captioner", "builtin", "--scorer", "builtin"]
    command += ["--port", str(port), "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    command += ["--candidates", str(args.candidates), "--max-queue", "1024"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if ServiceClient(f"http://127.0.0.1:{port}", timeout=2).request("GET", "/health").status == 200:
                return server
        except OSError:
            time.sleep(0.25)
    server.kill()
    raise SystemExit("the server did not start within 120 s")


def run(url: str, images: list[tuple[str, bytes]], count: int, clients: int) -> tuple[list, float]:
    """(latency s, HTTP status, images in its model call) per request, and the wall time of
    `count` requests sent from `clients` threads (one keep-alive connection each)."""
    per_client = [list(range(index, count, clients)) for index in range(clients)]

    def client_loop(indices: list[int]) -> list[tuple[float, int, int]]:
        client = ServiceClient(url)
        outcomes = []
        for index in indices:
            started = time.perf_counter()
            response = client.caption([images[index % len(images)]])
            batch = response.json()["timings"]["batch_images"] if response.status == 200 else 0
            outcomes.append((time.perf_counter() - started, response.status, batch))
        client.close()
        return outcomes

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        outcomes = [item for chunk in pool.map(client_loop, per_client) for item in chunk]
    return outcomes, time.perf_counter() - started


def summary(outcomes: list[tuple[float, int, int]], wall: float) -> dict:
    ok = [outcome for outcome in outcomes if outcome[1] == 200]
    latencies = [outcome[0] * 1000 for outcome in ok]
    return {
        "requests": len(outcomes),
        "errors": len(outcomes) - len(ok),
        "rps": len(outcomes) / wall,
        "p50": percentile(latencies, 0.5) if latencies else float("nan"),
        "p95": percentile(latencies, 0.95) if latencies else float("nan"),
        "batch": sum(outcome[2] for outcome in ok) / max(1, len(ok)),
    }


def model_ceiling(images: list[tuple[str, bytes]], sizes: tuple[int, ...], candidates: int) -> list[float]:
    """images/s of the same model called directly in this process (no HTTP) at each batch size:
    what batching that many requests could give at most."""
    import capfleet

    model = capfleet.load("builtin", scorer="builtin", device="cpu")
    opened = model.open_images([data for _, data in images])
    rates = []
    for size in sizes:
        batch = (opened * (size // len(opened) + 1))[:size]
        model.caption(batch, candidates=candidates)  # warm-up
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < 4.0:
            model.caption(batch, candidates=candidates)
            calls += 1
        rates.append(calls * size / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per case and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--soak", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    args = parser.parse_args()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as temp:
        generate_synthetic_dataset(32, Path(temp), seed=99, size=96, progress=False)
        images = [(path.name, path.read_bytes()) for path in sorted(Path(temp).rglob("*.png"))]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port, args)
    try:
        run(url, images, 2 * args.clients, args.clients)  # warm-up: first calls, allocator growth
        rss_before = rss_mb(server.pid)
        timed: dict[str, list] = {"sequential": [[], 0.0], "concurrent": [[], 0.0]}
        gains = []
        for _ in range(args.repeats):  # interleaved, so that a busy neighbour slows both cases alike
            walls = {}
            for case, clients in (("sequential", 1), ("concurrent", args.clients)):
                outcomes, walls[case] = run(url, images, args.requests, clients)
                timed[case][0] += outcomes
                timed[case][1] += walls[case]
            gains.append(walls["sequential"] / walls["concurrent"])
        sequential, concurrent = summary(*timed["sequential"]), summary(*timed["concurrent"])
        first_outcomes, first_wall = run(url, images, args.soak // 2, args.clients)
        rss_middle = rss_mb(server.pid)
        second_outcomes, second_wall = run(url, images, args.soak - args.soak // 2, args.clients)
        rss_after = rss_mb(server.pid)
        soak = summary(first_outcomes + second_outcomes, first_wall + second_wall)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"capfleet serve, built-in model, {args.candidates} candidates per image, one image per request")
    print(f"load average before/after: {load_before} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'case':<28}{'requests':>9}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'imgs/call':>10}")
    for name, row in (
        ("sequential (1 client)", sequential),
        (f"concurrent ({args.clients} clients)", concurrent),
        (f"soak ({args.clients} clients)", soak),
    ):
        print(
            f"{name:<28}{row['requests']:>9}{row['errors']:>8}{row['rps']:>9.1f}{row['p50']:>9.0f}"
            f"{row['p95']:>9.0f}{row['batch']:>10.2f}"
        )
    gain = concurrent["rps"] / sequential["rps"]
    single, batched = model_ceiling(images, (1, args.clients), args.candidates)
    print(f"throughput gain from batching: {gain:.2f}x (goal >= 2x): {'met' if gain >= 2 else 'NOT met'}")
    print(f"gain per interleaved repeat: {', '.join(f'{value:.2f}x' for value in gains)}")
    print(
        f"ceiling, the model alone in one process: {single:.1f} images/s at batch 1, {batched:.1f} at batch "
        f"{args.clients} ({batched / single:.2f}x)"
    )
    print(
        f"soak: {soak['errors']} errors; server RSS {rss_before:.0f} MB after warm-up, {rss_middle:.0f} MB after "
        f"{args.soak // 2} soak requests, {rss_after:.0f} MB after {args.soak}"
    )


if __name__ == "__main__":
    main()
