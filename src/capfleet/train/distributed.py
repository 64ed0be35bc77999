"""Process-group setup, deterministic data sharding and a local multi-process launcher.

The sharding is arranged so that N processes with per-process batch b see exactly the samples, in the
same order, that one process with batch N*b sees: every epoch draws one seeded permutation, cuts it into
global batches, and rank r takes the r-th contiguous slice of each global batch.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we called init_process_group, so we destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_train_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(device)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's env vars (RANK/WORLD_SIZE/LOCAL_RANK/MASTER_*), or
    reuse one already initialised; single process otherwise. nccl on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not dist.is_initialized() and world <= 1:
        return DistInfo(device=pick_train_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_train_device(device, local_rank)
    owns = False
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owns = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, owns)


def cleanup_distributed(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


class ShardedBatchSampler:
    """Yields this rank's index lists for global batches ``start_batch..`` of epoch ``epoch`` (drop_last)."""

    def __init__(
        self,
        num_samples: int,
        per_rank_batch: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.n, self.batch, self.rank, self.world = num_samples, per_rank_batch, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.global_batch = per_rank_batch * world_size
        self.batches_per_epoch = num_samples // self.global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{num_samples} samples < one global batch of {self.global_batch} "
                f"({world_size} process(es) x batch {per_rank_batch}); lower batch_size"
            )
        self.epoch, self.start_batch = 0, 0

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.n)
        for b in range(self.start_batch, self.batches_per_epoch):
            start = b * self.global_batch + self.rank * self.batch
            yield order[start : start + self.batch].tolist()


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value)
    return value


def gather_with_local_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate ``x`` from all ranks in rank order; only this rank's slice carries gradient. Each rank
    then computes the full global loss and backpropagates into its own rows, so the DDP-averaged gradient
    times world_size equals the single-process gradient (callers scale the loss by world_size)."""
    if not info.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[info.rank] = x
    return torch.cat(parts)


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(rank: int, world_size: int, port: int, fn: Any, args: tuple) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    fn(*args)


def launch_local(fn: Any, args: tuple, nprocs: int, start_method: str = "spawn", timeout: float | None = None) -> None:
    """Run ``fn(*args)`` in ``nprocs`` processes on this machine with torchrun-style env vars (for machines
    without torchrun on PATH, and for tests). ``fn`` must be importable (module-level). "fork" starts in
    milliseconds instead of re-importing torch, but is only safe before CUDA is initialised. A child's
    exception is re-raised here; past ``timeout`` seconds all children are killed and TimeoutError raised."""
    import time

    import torch.multiprocessing as mp

    ctx = mp.start_processes(
        _spawned, args=(nprocs, free_port(), fn, args), nprocs=nprocs, join=False, start_method=start_method
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not ctx.join(timeout=0.5):
            if deadline is not None and time.monotonic() > deadline:
                for proc in ctx.processes:
                    if proc.is_alive():
                        proc.kill()
                raise TimeoutError(f"{nprocs} training processes still running after {timeout}s; killed")
    except mp.ProcessRaisedException as exc:
        raise _user_error(exc) or exc from None


def _user_error(exc: Exception) -> Exception | None:
    """A child's ValueError/FileNotFoundError (a bad setting or dataset) as that type again, so the CLI
    reports it in one line like a single-process run; torch passes only the child's traceback text."""
    last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    for kind in (ValueError, FileNotFoundError):
        if last.startswith(f"{kind.__name__}: "):
            return kind(last[len(kind.__name__) + 2 :])
    return None
