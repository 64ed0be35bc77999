"""Train capfleet's captioner on a captioned imagefolder dataset (one process, or many under torchrun).

Losses are normalised over the whole optimizer step (all ranks, all accumulation micro-batches): the LM
loss by the global count of target tokens, the contrastive loss over each micro-step's global batch. With
DDP averaging gradients, every rank's loss is scaled by world_size, so N processes with batch b reproduce
one process with batch N*b (up to float summation order). Rank 0 writes checkpoints, logs and the model.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from capfleet.modeling.configuration import RELATION_SLOTS, CapfleetCaptionerConfig, preset_config
from capfleet.modeling.losses import IGNORE_LABEL, contrastive_loss, lm_loss
from capfleet.modeling.model import CapfleetCaptionerModel

from . import checkpoint as ckpt
from . import distributed as D
from .data import (
    CaptionDataset,
    CaptionRecord,
    collate,
    image_transform,
    scan_imagefolder,
    split_by_key,
    text_tokenizer,
)
from .distributed import DistInfo, ShardedBatchSampler, all_reduce_sum, gather_with_local_grad
from .logs import plot_losses, truncate_log
from .negatives import relation_map, swap_one_token, swap_relations
from .objective import Objective
from .objects import IGNORE, OBJECT_CLASSES, object_grid
from .tokenization import build_image_processor, build_tokenizer, save_bundle

log = logging.getLogger(__name__)
LOG_NAME, PLOT_NAME, CKPT_DIR = "train_log.jsonl", "loss.png", "checkpoints"


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


def lr_lambda(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        flat = p.ndim < 2 or "embed" in name or name == "logit_scale"
        (no_decay if flat else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8)


def _micro_batches(loader_for: Any, epoch: int, offset: int):
    """Endless (epoch, batch_index, batch) stream starting at a saved data position."""
    for ep in count(epoch):
        for i, batch in enumerate(loader_for(ep, offset), start=offset):
            yield ep, i, batch
        offset = 0


def _with_hard_negatives(
    model: Any, batch: dict, img: torch.Tensor, sims: torch.Tensor, scale, info, relations: torch.Tensor | None
) -> torch.Tensor:
    """CLIP loss whose image->text side also ranks each image's own one-word-swapped caption and, with a
    ``relations`` map (negatives.relation_map), its relation-swapped one where it makes a spatial claim."""
    module = model.module if hasattr(model, "module") else model
    image = F.normalize(img, dim=-1)

    def similarity(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        text = gather_with_local_grad(module.get_text_features(ids, mask).pooler_output.float(), info)
        return scale * (F.normalize(text, dim=-1) * image).sum(dim=-1, keepdim=True)

    columns = [sims.t(), similarity(*swap_one_token(batch["input_ids"], batch["attention_mask"]))]
    if relations is not None:
        swapped, has = swap_relations(batch["input_ids"], relations)
        has = gather_with_local_grad(has.float().unsqueeze(1), info) > 0
        columns.append(similarity(swapped, batch["attention_mask"]).masked_fill(~has, float("-inf")))
    return contrastive_loss(sims, image_to_text=torch.cat(columns, dim=1))


def _step_losses(
    model: Any,
    micro: list[dict[str, torch.Tensor]],
    cfg: TrainConfig,
    info: DistInfo,
    autocast: Any,
    objective: Objective | None = None,
    relations: torch.Tensor | None = None,
) -> dict[str, float]:
    """Forward/backward all micro-batches of one optimizer step; returns global mean losses."""
    objective = objective or Objective()
    extra_sums: dict[str, torch.Tensor] = {}
    n_tokens = all_reduce_sum(sum((b["labels"][:, 1:] != IGNORE_LABEL).sum() for b in micro).to(info.device), info)
    w, use_cl, use_obj = info.world_size, cfg.contrastive_weight > 0, cfg.object_loss_weight > 0
    lm_sum, cl_sum = torch.zeros((), device=info.device), torch.zeros((), device=info.device)
    obj_sum = torch.zeros((), device=info.device)
    for k, batch in enumerate(micro):
        batch = {key: v.to(info.device, non_blocking=True) for key, v in batch.items()}
        sync = k == len(micro) - 1 or not info.enabled
        with contextlib.nullcontext() if sync else model.no_sync(), autocast():
            out = model(
                pixel_values=batch["pixel_values"],
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                return_embeds=use_cl or objective.wants_embeds,
                return_objects=use_obj or objective.wants_objects,
            )
            tok = lm_loss(out.logits, batch["labels"], reduction="sum")
            loss = tok * w / n_tokens.clamp(min=1)
            if use_cl:
                img = gather_with_local_grad(out.image_embeds.float(), info)
                txt = gather_with_local_grad(out.text_embeds.float(), info)
                scale = out.logit_scale.float()
                # every rank computes the full global loss, so the shared scale's gradient is split W ways
                scale = scale.detach() + (scale - scale.detach()) / w
                sims = scale * F.normalize(txt, dim=-1) @ F.normalize(img, dim=-1).t()
                cl = contrastive_loss(sims)
                if cfg.hard_negatives:
                    cl = _with_hard_negatives(model, batch, img, sims, scale, info, relations)
                loss = loss + cfg.contrastive_weight * cl * w / len(micro)
                cl_sum += cl.detach() / len(micro)
            if use_obj:
                obj = _object_loss(out.object_logits, batch["object_targets"])
                loss = loss + cfg.object_loss_weight * obj / len(micro)  # a local mean: DDP's average is global
                obj_sum += obj.detach() / len(micro)
            for name, term in objective.losses(out, batch).items():  # per-process means: DDP averages them
                loss = loss + objective.weights[name] * term / len(micro)
                extra_sums[name] = extra_sums.get(name, 0.0) + term.detach().float() / len(micro)
        loss.backward()
        lm_sum += tok.detach()
    lm = all_reduce_sum(lm_sum, info) / n_tokens.clamp(min=1)
    lm, cl, obj = float(lm), float(cl_sum), float(all_reduce_sum(obj_sum, info)) / w
    extra = {name: float(all_reduce_sum(term, info)) / w for name, term in extra_sums.items()}
    if use_obj:
        extra["object_loss"] = obj
    weights = {**objective.weights, "object_loss": cfg.object_loss_weight}
    total = lm + cfg.contrastive_weight * cl + sum(weights[name] * v for name, v in extra.items())
    return {"loss": total, "lm_loss": lm, **({"contrastive_loss": cl} if use_cl else {}), **extra}


# Token targets that compare objects (x and y ranks among the scene's objects, tried first) at the object loss's
# full weight kept the encoder from learning shapes (8% of 100 held-out scenes' objects named at step 1000,
# against 92% without them): the relation flags ride at half weight.
RELATION_LOSS_SCALE = 0.5


def _object_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each image token's object class; images without a scene (IGNORE) left out.
    Targets with relation flags (train/objects.py) add their mean binary cross-entropy."""
    if targets.dim() == 2:
        return _token_cross_entropy(logits, targets)
    classes = logits.shape[-1] - RELATION_SLOTS
    loss = _token_cross_entropy(logits[..., :classes], targets[..., 0])
    flags, known = targets[..., 1:], targets[..., 1:] != IGNORE
    if known.any():
        relation = F.binary_cross_entropy_with_logits(logits[..., classes:][known].float(), flags[known].float())
        loss = loss + RELATION_LOSS_SCALE * relation
    return loss


def _token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    total = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum")
    return total / (targets != IGNORE).sum().clamp(min=1)


@torch.no_grad()
def _held_out_loss(raw: CapfleetCaptionerModel, data: CaptionDataset, cfg: TrainConfig, dev: torch.device) -> float:
    """Mean per-token LM loss over the held-out split (rank 0 only)."""
    raw.eval()
    total, tokens = 0.0, 0
    loader = DataLoader(data, batch_size=cfg.batch_size, collate_fn=functools.partial(collate, pad_id=0))
    for b in loader:
        out = raw(pixel_values=b["pixel_values"].to(dev), input_ids=b["input_ids"].to(dev))
        labels = b["labels"].to(dev)
        total += float(lm_loss(out.logits, labels, reduction="sum"))
        tokens += int((labels[:, 1:] != IGNORE_LABEL).sum())
    raw.train()
    return total / max(tokens, 1)


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
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    out = Path(cfg.output_dir)
    ckpt_root, log_path = out / CKPT_DIR, out / LOG_NAME
    resume_dir = ckpt.latest_checkpoint(ckpt_root) if cfg.resume else None

    scan = scan_imagefolder(cfg.data_dir, cfg.caption_mode)
    train_recs, held_recs = split_by_key(scan.records, cfg.held_out_fraction, cfg.seed)
    if resume_dir is not None:
        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resume_dir)
        image_processor = AutoImageProcessor.from_pretrained(resume_dir)
    else:
        tokenizer = build_tokenizer(
            (c for r in train_recs for c in (r.text, *r.captions)), cfg.min_freq, model_max_length=cfg.max_length
        )
        image_processor = build_image_processor(cfg.image_size)
    transform, tokenize = image_transform(image_processor), text_tokenizer(tokenizer, cfg.max_length)
    objective.prepare(tokenizer, image_processor, info.device)
    relations = relation_map(tokenizer) if cfg.hard_negatives and cfg.relation_negatives else None
    model_cfg = _model_config(cfg, tokenizer, resume_dir)
    targets = _object_targets(cfg, train_recs, model_cfg)
    data = objective.dataset(train_recs, transform, tokenize, scan.skipped, targets)
    held = CaptionDataset(held_recs, transform, tokenize) if held_recs else None

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    raw = CapfleetCaptionerModel(model_cfg)
    if resume_dir is not None:
        ckpt.load_model_weights(raw, resume_dir)
    raw.to(info.device).train()
    model: Any = raw
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(
            raw,
            device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=cfg.contrastive_weight <= 0,
        )
    optimizer = _optimizer(raw, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        functools.partial(lr_lambda, warmup=cfg.warmup_steps, total=cfg.max_steps, min_ratio=cfg.min_lr_ratio),
    )
    use_amp = info.device.type == "cuda" and cfg.mixed_precision in ("auto", "bf16")
    if cfg.mixed_precision == "bf16" and not use_amp:
        log.warning("bf16 autocast is only used on CUDA; training in float32")
    autocast = functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16, enabled=use_amp)

    sampler = ShardedBatchSampler(len(data), cfg.batch_size, info.rank, info.world_size, cfg.seed)

    def loader_for(epoch: int, offset: int) -> DataLoader:
        sampler.set_position(epoch, offset)
        return DataLoader(
            data,
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            collate_fn=functools.partial(objective.collate, pad_id=tokenizer.pad_token_id),
            pin_memory=info.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed + epoch),
        )  # keeps global RNG untouched

    step, epoch, offset, resumed_from = 0, 0, 0, None
    if resume_dir is not None:
        state = ckpt.load_trainer_state(resume_dir)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, offset, resumed_from = state["step"], state["epoch"], state["batch"], state["step"]
        rngs = state["rng"]
        if state.get("global_batch") != sampler.global_batch * cfg.grad_accum:
            log.warning("global batch changed since the checkpoint: the data position is only approximate")
        if len(rngs) == info.world_size:
            ckpt.restore_rng(rngs[info.rank])
        else:
            log.warning(
                "checkpoint was written by %d processes, now %d: RNG states not restored", len(rngs), info.world_size
            )
        if info.is_main:
            truncate_log(log_path, step)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if resume_dir is None:
            log_path.unlink(missing_ok=True)  # a fresh run starts a fresh log
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
    D.barrier(info)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=cfg.max_steps, initial=step, disable=not (cfg.progress and info.is_main), desc="train", unit="step"
    )
    stream = _micro_batches(loader_for, epoch, offset)
    first_loss = last_loss = held_loss = None
    stop_at = min(cfg.max_steps, cfg.stop_after) if cfg.stop_after else cfg.max_steps
    try:
        while step < stop_at:
            micro = []
            for _ in range(cfg.grad_accum):
                epoch, batch_idx, batch = next(stream)
                micro.append(batch)
            losses = _step_losses(model, micro, cfg, info, autocast, objective, relations)
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            epoch, offset = (epoch + 1, 0) if batch_idx + 1 >= sampler.batches_per_epoch else (epoch, batch_idx + 1)
            first_loss = losses["loss"] if first_loss is None else first_loss
            last_loss = losses["loss"]
            row = {
                "step": step,
                "epoch": epoch,
                **{k: round(v, 6) for k, v in losses.items()},
                "lr": scheduler.get_last_lr()[0],
            }
            if held is not None and info.is_main and cfg.eval_every and (step % cfg.eval_every == 0 or step == stop_at):
                row["held_out_loss"] = held_loss = round(_held_out_loss(raw, held, cfg, info.device), 6)
            if info.is_main and (step % max(cfg.log_every, 1) == 0 or step in (1, stop_at) or "held_out_loss" in row):
                with log_path.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.4f}", epoch=epoch)
            if (cfg.save_every and step % cfg.save_every == 0) or (step == stop_at < cfg.max_steps):
                rngs = D.all_gather_objects(ckpt.capture_rng(), info)
                if info.is_main:
                    state = {
                        "step": step,
                        "epoch": epoch,
                        "batch": offset,
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": rngs,
                        "world_size": info.world_size,
                        "global_batch": sampler.global_batch * cfg.grad_accum,
                    }
                    ckpt.save_checkpoint(ckpt_root, step, raw, tokenizer, image_processor, state, cfg.keep_checkpoints)
                D.barrier(info)
    except KeyboardInterrupt:
        bar.close()
        raise TrainingInterrupted(step) from None
    bar.close()

    plot_path = None
    stopped = step < cfg.max_steps
    if info.is_main and not stopped:
        if held is not None and held_loss is None:
            held_loss = _held_out_loss(raw, held, cfg, info.device)
        save_bundle(raw, tokenizer, image_processor, out)
        if cfg.plot and log_path.exists():
            plot_path = plot_losses(log_path, out / PLOT_NAME)
    D.barrier(info)
    result = TrainResult(
        model_dir=out,
        steps=step,
        first_loss=first_loss,
        last_loss=last_loss,
        held_out_loss=held_loss,
        log_path=log_path,
        plot_path=plot_path,
        resumed_from=resumed_from,
        stopped_early=stopped,
        world_size=info.world_size,
        samples=len(data),
        skipped=dict(data.skipped),
        seconds=round(time.time() - t0, 2),
    )
    if info.is_main:
        (out / "train_result.json").write_text(json.dumps(asdict(result), indent=2, default=str))
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
