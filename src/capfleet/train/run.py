"""What one process's training run holds, and where it comes from: ``setup`` builds it (data, tokenizer,
model, optimizer, schedule) or restores it from the newest checkpoint; ``save_checkpoint`` writes what
``setup`` restores. The trainer's loop only reads and advances a :class:`Run`."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from capfleet.modeling.configuration import CapfleetCaptionerConfig, preset_config
from capfleet.modeling.model import CapfleetCaptionerModel

from . import checkpoint as ckpt
from . import distributed as D
from .data import CaptionDataset, CaptionRecord, image_transform, scan_imagefolder, split_by_key, text_tokenizer
from .distributed import DistInfo, ShardedBatchSampler
from .logs import truncate_log
from .negatives import relation_map
from .objective import Objective
from .objects import IGNORE, OBJECT_CLASSES, object_grid
from .tokenization import build_image_processor, build_tokenizer

if TYPE_CHECKING:
    from .trainer import TrainConfig

log = logging.getLogger(__name__)
LOG_NAME, PLOT_NAME, CKPT_DIR = "train_log.jsonl", "loss.png", "checkpoints"


@dataclass
class Run:
    """One process's run: what nanoGPT keeps in module globals. ``epoch`` and ``offset`` are the data
    position of the next step (``offset``: its first batch within the epoch)."""

    cfg: TrainConfig
    info: DistInfo
    objective: Objective
    tokenizer: Any
    image_processor: Any
    data: CaptionDataset
    held: CaptionDataset | None
    relations: torch.Tensor | None  # negatives.relation_map, with --relation-negatives
    raw: CapfleetCaptionerModel
    model: Any  # ``raw``, or ``raw`` under DDP
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: ShardedBatchSampler
    autocast: Callable[[], Any]
    step: int = 0
    epoch: int = 0
    offset: int = 0
    resumed_from: int | None = None

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def log_path(self) -> Path:
        return self.out / LOG_NAME

    @property
    def global_batch(self) -> int:
        """Samples per optimizer step over all processes."""
        return self.sampler.global_batch * self.cfg.grad_accum

    def loader(self, epoch: int, offset: int) -> DataLoader:
        """This process's batches of ``epoch`` from batch ``offset`` on (a generator of its own per epoch,
        so the global RNG is untouched)."""
        self.sampler.set_position(epoch, offset)
        return DataLoader(
            self.data,
            batch_sampler=self.sampler,
            num_workers=self.cfg.num_workers,
            collate_fn=functools.partial(self.objective.collate, pad_id=self.tokenizer.pad_token_id),
            pin_memory=self.info.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.seed + epoch),
        )


def setup(cfg: TrainConfig, info: DistInfo, objective: Objective) -> Run:
    """A run from scratch, or from the newest checkpoint when ``cfg.resume`` finds one. Rank 0 writes the
    run's config into the output folder (and a fresh run starts a fresh log)."""
    _set_runtime(cfg)
    resume_dir = ckpt.latest_checkpoint(Path(cfg.output_dir) / CKPT_DIR) if cfg.resume else None
    scan = scan_imagefolder(cfg.data_dir, cfg.caption_mode)
    train_recs, held_recs = split_by_key(scan.records, cfg.held_out_fraction, cfg.seed)
    tokenizer, image_processor = _processors(cfg, train_recs, resume_dir)
    transform, tokenize = image_transform(image_processor), text_tokenizer(tokenizer, cfg.max_length)
    objective.prepare(tokenizer, image_processor, info.device)
    relations = relation_map(tokenizer) if cfg.hard_negatives and cfg.relation_negatives else None
    model_cfg = _model_config(cfg, tokenizer, resume_dir)
    targets = _object_targets(cfg, train_recs, model_cfg)
    data = objective.dataset(train_recs, transform, tokenize, scan.skipped, targets)
    held = CaptionDataset(held_recs, transform, tokenize) if held_recs else None
    raw, model = _model(cfg, model_cfg, resume_dir, info)
    optimizer = _optimizer(raw, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        functools.partial(lr_lambda, warmup=cfg.warmup_steps, total=cfg.max_steps, min_ratio=cfg.min_lr_ratio),
    )
    sampler = ShardedBatchSampler(len(data), cfg.batch_size, info.rank, info.world_size, cfg.seed)
    autocast = _autocast(cfg, info)
    run = Run(
        cfg,
        info,
        objective,
        tokenizer,
        image_processor,
        data,
        held,
        relations,
        raw,
        model,
        optimizer,
        scheduler,
        sampler,
        autocast,
    )
    if resume_dir is not None:
        _restore(run, resume_dir)
    if info.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        if resume_dir is None:
            run.log_path.unlink(missing_ok=True)
        (run.out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
    D.barrier(info)
    return run


def _set_runtime(cfg: TrainConfig) -> None:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def _processors(cfg: TrainConfig, records: list[CaptionRecord], resume_dir: Path | None) -> tuple[Any, Any]:
    """(tokenizer, image processor): the checkpoint's when resuming, else built from the training captions."""
    if resume_dir is not None:
        from transformers import AutoImageProcessor, AutoTokenizer

        return AutoTokenizer.from_pretrained(resume_dir), AutoImageProcessor.from_pretrained(resume_dir)
    captions = (c for r in records for c in (r.text, *r.captions))
    tokenizer = build_tokenizer(captions, cfg.min_freq, model_max_length=cfg.max_length)
    return tokenizer, build_image_processor(cfg.image_size)


def _model_config(cfg: TrainConfig, tokenizer: Any, resume_dir: Path | None) -> CapfleetCaptionerConfig:
    """The checkpoint's config when resuming; else the preset sized to the tokenizer (positions cover at
    least 64 tokens so long ``max_new_tokens`` at inference do not run off the table)."""
    if resume_dir is not None:
        return CapfleetCaptionerConfig.from_pretrained(resume_dir)
    special = {
        "max_position_embeddings": max(64, cfg.max_length),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": tokenizer.bos_token_id,
        "object_classes": len(OBJECT_CLASSES) if cfg.object_loss_weight > 0 else 0,
        "object_relations": cfg.object_relations and cfg.object_loss_weight > 0,
    }
    return preset_config(cfg.preset, len(tokenizer), cfg.image_size, **{**special, **cfg.model_overrides})


def _object_targets(cfg: TrainConfig, records: list[CaptionRecord], model_cfg: CapfleetCaptionerConfig) -> Any:
    """The dataset's per-record token targets when the object loss is on (None when off)."""
    if cfg.object_loss_weight < 0:
        raise ValueError(f"object_loss_weight must be >= 0, got {cfg.object_loss_weight}")
    if cfg.object_loss_weight == 0:
        return None
    if model_cfg.object_classes != len(OBJECT_CLASSES):
        raise ValueError("object_loss_weight > 0, but the checkpoint being resumed was trained without it")
    grid = model_cfg.image_size // model_cfg.patch_size
    if not any(object_grid(r.scene, 1)[0] != IGNORE for r in records):
        raise ValueError("object_loss_weight > 0 needs a synth dataset: no row has a readable `scene` column")
    if cfg.object_relations != model_cfg.object_relations:
        raise ValueError(
            f"object_relations={cfg.object_relations}, but the checkpoint being resumed has the other setting"
        )
    return functools.partial(_record_targets, grid=grid, relations=model_cfg.object_relations)


def _record_targets(record: CaptionRecord, grid: int, relations: bool) -> torch.Tensor:
    return object_grid(record.scene, grid, relations)


def _model(
    cfg: TrainConfig, model_cfg: CapfleetCaptionerConfig, resume_dir: Path | None, info: DistInfo
) -> tuple[CapfleetCaptionerModel, Any]:
    """(the model, what the step calls: the model itself or its DDP wrapper), seeded by ``cfg.seed``."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    raw = CapfleetCaptionerModel(model_cfg)
    if resume_dir is not None:
        ckpt.load_model_weights(raw, resume_dir)
    raw.to(info.device).train()
    if not info.enabled:
        return raw, raw
    from torch.nn.parallel import DistributedDataParallel as DDP

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return raw, DDP(raw, device_ids=device_ids, find_unused_parameters=cfg.contrastive_weight <= 0)


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        flat = p.ndim < 2 or "embed" in name or name == "logit_scale"
        (no_decay if flat else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8)


def lr_lambda(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _autocast(cfg: TrainConfig, info: DistInfo) -> Callable[[], Any]:
    use_amp = info.device.type == "cuda" and cfg.mixed_precision in ("auto", "bf16")
    if cfg.mixed_precision == "bf16" and not use_amp:
        log.warning("bf16 autocast is only used on CUDA; training in float32")
    return functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16, enabled=use_amp)


def save_checkpoint(run: Run) -> None:
    """Every rank's RNG state and, from rank 0, the model, optimizer, schedule and data position."""
    rngs = D.all_gather_objects(ckpt.capture_rng(), run.info)
    if run.info.is_main:
        state = {
            "step": run.step,
            "epoch": run.epoch,
            "batch": run.offset,
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "rng": rngs,
            "world_size": run.info.world_size,
            "global_batch": run.global_batch,
        }
        root, keep = run.out / CKPT_DIR, run.cfg.keep_checkpoints
        ckpt.save_checkpoint(root, run.step, run.raw, run.tokenizer, run.image_processor, state, keep)
    D.barrier(run.info)


def _restore(run: Run, resume_dir: Path) -> None:
    """What :func:`save_checkpoint` wrote (the weights are already in); the log loses rows past the step."""
    state = ckpt.load_trainer_state(resume_dir)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.step, run.epoch, run.offset, run.resumed_from = state["step"], state["epoch"], state["batch"], state["step"]
    if state.get("global_batch") != run.global_batch:
        log.warning("global batch changed since the checkpoint: the data position is only approximate")
    rngs, info = state["rng"], run.info
    if len(rngs) == info.world_size:
        ckpt.restore_rng(rngs[info.rank])
    else:
        log.warning(
            "checkpoint was written by %d processes, now %d: RNG states not restored", len(rngs), info.world_size
        )
    if info.is_main:
        truncate_log(run.log_path, run.step)
