"""What one optimizer step computes: forward and backward over its micro-batches, with each loss normalised
over the whole step (all ranks, all micro-batches; see trainer.py), and the held-out loss."""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from capfleet.modeling.configuration import RELATION_FLAGS
from capfleet.modeling.losses import IGNORE_LABEL, contrastive_loss, lm_loss
from capfleet.modeling.model import CapfleetCaptionerModel

from .data import CaptionDataset, collate
from .distributed import DistInfo, all_reduce_sum, gather_with_local_grad
from .negatives import swap_one_token, swap_relations
from .objective import Objective
from .objects import IGNORE

if TYPE_CHECKING:
    from .trainer import TrainConfig


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


def step_losses(
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
    classes = logits.shape[-1] - len(RELATION_FLAGS)
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
def held_out_loss(raw: CapfleetCaptionerModel, data: CaptionDataset, cfg: TrainConfig, dev: torch.device) -> float:
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
