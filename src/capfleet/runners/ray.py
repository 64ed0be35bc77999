"""`--runner ray`: shard tasks on the actors of a Ray cluster, the models loaded once per actor.

The launcher (this process) runs the lifecycle as always: checks, OUT's lock, the plan. Each
actor holds one ShardWorker; shards go to whichever actor is free. An actor that dies mid-shard
(a killed process, a lost node) is restarted by Ray and its shard given out again: the shard
processor publishes a shard whole and marks it done last, so a redo never duplicates a row.
Progress is counted per finished shard here, and as `capfleet_images` counters in Ray's
dashboard.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter, deque
from dataclasses import asdict

from capfleet.config import ConfigError, RunConfig
from capfleet.errors import require
from capfleet.runners.base import RunnerError, ShardTask
from capfleet.runners.shard_processor import ShardStats

log = logging.getLogger("capfleet")
RETRIES = 3  # attempts of a shard whose actor died, beyond the first
RESTART_WAIT_S = 120.0  # how long a dead actor may take to come back before it gets no more work


def _ray():
    require(("ray",), "ray", "--runner ray")
    import ray

    return ray


def _reachable(address: str) -> bool:
    """A TCP look at HOST:PORT first: Ray's own client waits minutes on an address nobody answers."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        return True
    except (OSError, ValueError):
        return False


def actors_on_node(config: RunConfig, room: dict) -> int:
    """Actors of --ray-cpus-per-worker CPUs (and --gpus-per-worker GPUs) one node holds: an actor lives on one."""
    count = int(room.get("CPU", 0) // config.ray_cpus_per_worker)
    if config.gpus_per_worker > 0:
        count = min(count, int(room.get("GPU", 0) // config.gpus_per_worker))
    return count


def _wants(config: RunConfig) -> str:
    gpus = f" and {config.gpus_per_worker:g} GPU" if config.gpus_per_worker > 0 else ""
    return f"{config.ray_cpus_per_worker:g} CPU{gpus} (--ray-cpus-per-worker, --gpus-per-worker)"


def _offers(room: dict) -> str:
    return f"{room.get('CPU', 0):g} CPU, {room.get('GPU', 0):g} GPU"


class _ShardActor:
    """One per Ray worker process: a ShardWorker and the dashboard's counters."""

    def __init__(self, settings: dict):
        from ray.util.metrics import Counter as RayCounter

        from capfleet.runners.base import ShardWorker

        self.worker = ShardWorker(RunConfig(**settings))
        self.images = RayCounter("capfleet_images", "images done by capfleet shard actors", tag_keys=("outcome",))

    def ping(self) -> bool:
        """Answers once the actor is up again after a restart: only then does it get more work."""
        return True

    def do(self, task: ShardTask) -> dict:
        stats = self.worker.do(task)
        for outcome in ("captioned", "failed", "filtered"):
            if getattr(stats, outcome):
                self.images.inc(getattr(stats, outcome), tags={"outcome": outcome})
        return stats.to_json()


class RayRunner:
    name = "ray"
    loads_models = False  # each actor loads its own

    def __init__(self, ray_module, actors: int):
        self.ray = ray_module
        self.actors = actors

    @classmethod
    def connect(cls, config: RunConfig) -> RayRunner:
        """Join the cluster before anything is listed or written; one line when it cannot be reached."""
        ray = _ray()
        address = config.ray_address or os.environ.get("RAY_ADDRESS")
        if address and address != "auto" and not _reachable(address.removeprefix("ray://")):
            raise ConfigError(f"cannot reach the Ray cluster at {address}: start it (`ray start --head`) or fix it")
        if not ray.is_initialized():
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        resources, nodes = ray.cluster_resources(), [node for node in ray.nodes() if node["Alive"]]
        fits = sum(actors_on_node(config, node["Resources"]) for node in nodes)
        if fits == 0:  # Ray would keep every actor pending, and the run waiting, for ever
            ray.shutdown()
            raise ConfigError(
                f"no node of the Ray cluster holds an actor of {_wants(config)} (nodes: "
                + "; ".join(_offers(node["Resources"]) for node in nodes)
                + "): ask for less per actor, or add nodes; nothing was written"
            )
        actors = config.ray_workers or fits
        log.info("Ray: %d shard actors on %s", actors, ", ".join(f"{k} {v:g}" for k, v in resources.items()
                                                                 if k in ("CPU", "GPU")))  # fmt: skip
        return cls(ray, actors)

    def prepare(self, config: RunConfig, run) -> None:
        pass

    def map(self, config: RunConfig, tasks: list[ShardTask], progress) -> ShardStats:
        ray = self.ray
        settings = {**asdict(config), "progress": False, "runner": "local", "task_index": None, "task_count": None}
        # Torch in an actor uses the CPUs it reserved, not every core of its node (capfleet's default).
        settings["threads"] = config.threads or max(1, int(config.ray_cpus_per_worker))
        actor_class = ray.remote(num_cpus=config.ray_cpus_per_worker, num_gpus=config.gpus_per_worker,
                                 max_restarts=-1)(_ShardActor)  # fmt: skip
        pool = [actor_class.remote(settings) for _ in range(min(self.actors, len(tasks)))]
        queue, running, attempts, down_since = deque(tasks), {}, Counter(), {}
        free, total, failures = list(pool), ShardStats(), []
        while (queue and (free or running)) or any(task is not None for _, task in running.values()):
            while queue and free:
                actor, task = free.pop(), queue.popleft()
                running[actor.do.remote(task)] = (actor, task)
            [done], _ = ray.wait(list(running), num_returns=1)
            actor, task = running.pop(done)
            try:
                result = ray.get(done)
            except ray.exceptions.RayActorError as exc:  # the process died (or is still restarting)
                if task is None:
                    if time.monotonic() - down_since.setdefault(id(actor), time.monotonic()) > RESTART_WAIT_S:
                        continue  # never came back (its node is gone for good): no more work for it
                    time.sleep(0.5)
                else:
                    attempts[task.shard.name] += 1
                    if attempts[task.shard.name] > RETRIES:
                        failures.append(f"shard {task.shard.name}: its actor died {RETRIES + 1} times ({exc})")
                    else:
                        log.warning("shard %s: its Ray actor died; redoing it", task.shard.name)
                        queue.appendleft(task)
                running[actor.ping.remote()] = (actor, None)  # Ray restarts it (max_restarts); wait for that
                continue
            except ray.exceptions.RayTaskError as exc:
                failures.append(f"shard {task.shard.name}: {exc.cause!r}")
                free.append(actor)
                continue
            free.append(actor)
            down_since.pop(id(actor), None)
            if task is not None:
                stats = ShardStats.from_json(result)
                total.add(stats)
                progress.update(stats.seen)
        for actor in pool:
            ray.kill(actor)
        failures += [f"shard {task.shard.name}: no Ray actor came back to do it" for task in queue]
        if failures:
            raise RunnerError(
                f"{failures[0]} ({len(failures)} shards failed); finished shards are kept: rerun to resume"
            )
        return total

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()
