"""Train capfleet's captioner on a captioned imagefolder dataset (one process, or many under torchrun).

Losses are normalised over the whole optimizer step (all ranks, all accumulation micro-batches): the LM
loss by the global count of target tokens, the contrastive loss over each micro-step's global batch. With
DDP averaging gradients, every rank's loss is scaled by world_size, so N processes with batch b reproduce
one process with batch N*b (up to float summation order). Rank 0 writes checkpoints, logs and the model.

The loop is plain, after nanoGPT: ``run.setup`` builds (or restores) the run, then each iteration is
``train_step``, ``log_step`` and, now and then, ``run.save_checkpoint``; ``finish`` saves the model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from itertools import count
from pathlib import Path
from typing import Any

import torch

from . import distributed as D
from .distributed import DistInfo
from .logs import plot_losses
from .objective import Objective
from .run import PLOT_NAME, Run, save_checkpoint, setup
from .step import held_out_loss, step_losses
from .tokenization import save_bundle


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``step`` is the last optimizer step that completed."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


@dataclass
class TrainConfig:
    """Everything a run depends on. ``batch_size`` is per process; global batch per optimizer step is
    batch_size * world_size * grad_accum."""

    data_dir: str | list[str]
    output_dir: str
    preset: str = "tiny"
    image_size: int = 64
    max_length: int = 32
    batch_size: int = 16
    grad_accum: int = 1
    max_steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    contrastive_weight: float = 0.1
    hard_negatives: bool = False  # add a one-word-swapped caption per image to the contrastive loss
    # with hard_negatives: also the caption with left/right and above/below swapped, where it has one
    relation_negatives: bool = False
    # Weight of an auxiliary loss: which synth colour+shape object (or background) each image token shows,
    # labels from the dataset's `scene` column (see train/objects.py). With the captioning loss alone the
    # built-in model learnt colours but not shapes; 0 turns it off.
    object_loss_weight: float = 0.0
    # with object_loss_weight: each token also says in which directions its object stands to another object
    object_relations: bool = False
    caption_mode: str = "text"
    min_freq: int = 1
    held_out_fraction: float = 0.0
    eval_every: int = 0
    save_every: int = 200
    keep_checkpoints: int = 2
    log_every: int = 10
    resume: bool = True
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    mixed_precision: str = "auto"  # "auto"/"bf16": bf16 autocast on CUDA (ignored on CPU); "no"
    num_threads: int | None = None
    deterministic: bool = False  # torch.use_deterministic_algorithms: bit-exact resume on CUDA too (slower)
    progress: bool = True
    plot: bool = True
    stop_after: int | None = None  # checkpoint and stop at this step (time-boxed jobs, resume tests)
    model_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    model_dir: Path
    steps: int
    first_loss: float | None
    last_loss: float | None
    held_out_loss: float | None
    log_path: Path
    plot_path: Path | None
    resumed_from: int | None
    stopped_early: bool
    world_size: int
    samples: int
    skipped: dict[str, int]
    seconds: float


def train(config: TrainConfig, objective: Objective | None = None) -> TrainResult:
    """Run (or resume) training; under torchrun every rank calls this. See :class:`TrainConfig`;
    ``objective`` adds loss terms (distillation's teacher targets)."""
    info = D.init_distributed(config.device)
    try:
        return _train(config, info, objective or Objective())
    finally:
        D.cleanup_distributed(info)


def _train(cfg: TrainConfig, info: DistInfo, objective: Objective) -> TrainResult:
    t0 = time.time()
    run = setup(cfg, info, objective)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=cfg.max_steps, initial=run.step, disable=not (cfg.progress and info.is_main), desc="train", unit="step"
    )
    batches = _micro_batches(run.loader, run.epoch, run.offset)
    first_loss = last_loss = held_loss = None
    stop_at = min(cfg.max_steps, cfg.stop_after) if cfg.stop_after else cfg.max_steps
    try:
        while run.step < stop_at:
            losses = train_step(run, batches)
            first_loss = losses["loss"] if first_loss is None else first_loss
            last_loss = losses["loss"]
            held_loss = log_step(run, losses, stop_at).get("held_out_loss", held_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.4f}", epoch=run.epoch)
            if (cfg.save_every and run.step % cfg.save_every == 0) or (run.step == stop_at < cfg.max_steps):
                save_checkpoint(run)
    except KeyboardInterrupt:
        bar.close()
        raise TrainingInterrupted(run.step) from None
    bar.close()
    return finish(run, t0, first_loss, last_loss, held_loss)


def _micro_batches(loader: Callable[[int, int], Any], epoch: int, offset: int) -> Iterator[tuple[int, int, dict]]:
    """Endless (epoch, batch_index, batch) stream starting at a saved data position."""
    for ep in count(epoch):
        for i, batch in enumerate(loader(ep, offset), start=offset):
            yield ep, i, batch
        offset = 0


def train_step(run: Run, batches: Iterator[tuple[int, int, dict]]) -> dict[str, float]:
    """One optimizer step over ``grad_accum`` micro-batches; moves the run's step and data position on."""
    micro = []
    for _ in range(run.cfg.grad_accum):
        epoch, batch_idx, batch = next(batches)
        micro.append(batch)
    losses = step_losses(run.model, micro, run.cfg, run.info, run.autocast, run.objective, run.relations)
    if run.cfg.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(run.raw.parameters(), run.cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    end_of_epoch = batch_idx + 1 >= run.sampler.batches_per_epoch
    run.epoch, run.offset = (epoch + 1, 0) if end_of_epoch else (epoch, batch_idx + 1)
    return losses


def log_step(run: Run, losses: dict[str, float], stop_at: int) -> dict[str, Any]:
    """The step's row: losses, learning rate and, every ``eval_every`` steps, the held-out loss. Rank 0
    appends it to the log every ``log_every`` steps, at the first and last, and with a held-out loss."""
    cfg, step, main = run.cfg, run.step, run.info.is_main
    row = {"step": step, "epoch": run.epoch, **{k: round(v, 6) for k, v in losses.items()}}
    row["lr"] = run.scheduler.get_last_lr()[0]
    if run.held is not None and main and cfg.eval_every and (step % cfg.eval_every == 0 or step == stop_at):
        row["held_out_loss"] = round(held_out_loss(run.raw, run.held, cfg, run.info.device), 6)
    if main and (step % max(cfg.log_every, 1) == 0 or step in (1, stop_at) or "held_out_loss" in row):
        with run.log_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
    return row


def finish(
    run: Run, t0: float, first_loss: float | None, last_loss: float | None, held_loss: float | None
) -> TrainResult:
    """When training reached ``max_steps``, rank 0 saves the model (and the loss plot); every rank returns
    the result, which rank 0 also writes as train_result.json."""
    cfg, info = run.cfg, run.info
    plot_path = None
    stopped = run.step < cfg.max_steps
    if info.is_main and not stopped:
        if run.held is not None and held_loss is None:
            held_loss = held_out_loss(run.raw, run.held, cfg, info.device)
        save_bundle(run.raw, run.tokenizer, run.image_processor, run.out)
        if cfg.plot and run.log_path.exists():
            plot_path = plot_losses(run.log_path, run.out / PLOT_NAME)
    D.barrier(info)
    result = TrainResult(
        model_dir=run.out,
        steps=run.step,
        first_loss=first_loss,
        last_loss=last_loss,
        held_out_loss=held_loss,
        log_path=run.log_path,
        plot_path=plot_path,
        resumed_from=run.resumed_from,
        stopped_early=stopped,
        world_size=info.world_size,
        samples=len(run.data),
        skipped=dict(run.data.skipped),
        seconds=round(time.time() - t0, 2),
    )
    if info.is_main:
        (run.out / "train_result.json").write_text(json.dumps(asdict(result), indent=2, default=str))
    return result


def train_main(
    data_dir: str | list[str], output_dir: str, nproc: int = 1, objective: Objective | None = None, **options: Any
) -> TrainResult:
    """Entry point for ``capfleet train DATA -o MODEL_DIR [--option value ...]``: ``options`` are
    :class:`TrainConfig` fields. ``nproc > 1`` spawns local DDP processes (prefer ``torchrun`` on clusters)."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown training options: {sorted(unknown)}")
    cfg = TrainConfig(data_dir=data_dir, output_dir=str(output_dir), **options)
    if nproc > 1:
        D.launch_local(train, (cfg, objective), nproc)
        saved = json.loads((Path(output_dir) / "train_result.json").read_text())
        for key in ("model_dir", "log_path", "plot_path"):
            saved[key] = Path(saved[key]) if saved[key] else None
        return TrainResult(**saved)
    return train(cfg, objective)
