"""Distil any captioner + scorer capfleet loads into a small capfleet captioner, as DLIP does.

1. The teacher captions and embeds the dataset once (:mod:`capfleet.train.teacher`); its captions
   become the student's training targets (sequence-level KD), beside the dataset's own captions
   unless ``data_captions`` is off.
2. The student trains with the trainer's loop (resume, checkpoints, DDP, logs) and three more
   terms, through :class:`DistillObjective`:
   - ``kl_loss``: token-level KL to the teacher's next-token distribution on the same caption, only
     when the teacher is a capfleet model whose vocabulary holds every student token (word-level
     tokenizers over the same words); a foreign tokenizer (BLIP, a VLM) cannot be lined up token by
     token, so the student then learns from the teacher's captions alone;
   - ``feature_loss``: 1 - cosine between each student image token, mapped to the teacher's width by
     a linear head, and the teacher encoder's token at the same place, when the teacher is a capfleet
     model (FitNets-style hints). What the teacher knows about each part of the image reaches the
     student's encoder directly, not only through the words it writes;
   - ``object_kl``: KL to the teacher's per-token object predictions when the teacher has an object head
     (the built-in model): the teacher labels every patch of every image, synth scene or not, so
     the student gets the dense signal `capfleet train --object-loss-weight` can only take from a
     synth ``scene`` column. With the two terms above, a student 34x smaller than its teacher keeps
     98% of its object accuracy on the synthetic world (benchmarks/README.md, bench_distill.py);
   - ``embed_loss``: 1 - cosine between the student's image / text embeddings and the teacher
     scorer's, for the same image and caption. The student's projection heads are sized to the
     teacher's embedding width, so they are the projection between the two spaces and the shipped
     student embeds in (an approximation of) the teacher's space;
   - the student's own contrastive loss (``contrastive_weight``), as in ``capfleet train``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from capfleet.decoding import CANDIDATES, DEFAULT
from capfleet.metadata_jsonl import METADATA_NAME
from capfleet.modeling.configuration import MODEL_TYPE
from capfleet.modeling.losses import IGNORE_LABEL

from . import distributed as D
from .data import CaptionDataset, CaptionRecord, collate, image_transform
from .objective import Objective, Tokenize, Transform
from .teacher import TEACHER_DIR, TeacherSettings, TeacherTargets, load_targets, run_teacher
from .trainer import TrainResult, train_main

log = logging.getLogger(__name__)
DISTILL_CONFIG = "distill_config.json"


@dataclass
class DistillConfig:
    """The teacher and the weights of the distillation terms (training settings are TrainConfig's)."""

    teacher: str
    teacher_scorer: str = "auto"
    teacher_candidates: int = CANDIDATES
    teacher_decoding: str = DEFAULT.decoding
    teacher_max_new_tokens: int = DEFAULT.max_new_tokens
    data_captions: bool = True
    kl_weight: float = 1.0
    kl_temperature: float = 1.0
    embed_weight: float = 1.0
    feature_weight: float = 1.0
    object_weight: float = 4.0


@dataclass
class DistillResult:
    train: TrainResult
    kl: bool  # whether the token-level KL term was used
    kl_reason: str
    embed: bool  # whether the embedding-matching term was used
    features: bool  # whether the image-token matching term was used
    objects: bool  # whether the teacher's per-token object predictions were used
    teacher_images: int


def capfleet_model_folder(name: str) -> str | None:
    """The folder of a capfleet-trained model (``builtin`` or a ``capfleet train`` output), else None."""
    from capfleet.models.registry import CAPTIONER_ALIASES, resolve_name

    path = resolve_name(name, CAPTIONER_ALIASES, "teacher")
    config = Path(path) / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") == MODEL_TYPE:
        return path
    return None


def vocabulary_map(student_tokenizer: Any, teacher_tokenizer: Any) -> torch.Tensor | None:
    """The teacher's id of every student token (indexed by student id), or None when some student
    token is missing from the teacher's vocabulary."""
    student, teacher = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    if len(student) != len(student_tokenizer) or any(word not in teacher for word in student):
        return None
    ids = torch.empty(len(student), dtype=torch.long)
    for word, index in student.items():
        ids[index] = teacher[word]
    return ids


def token_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float):
    """KL(teacher || student) of the next-token distributions: the mean over a caption's real tokens,
    then over captions (a per-sample mean, so DDP's average over equal per-process batches is exact)."""
    real = (labels[:, 1:] != IGNORE_LABEL).float()
    student = F.log_softmax(student_logits[:, :-1].float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits[:, :-1].float() / temperature, dim=-1)
    per_token = (teacher.exp() * (teacher - student)).sum(dim=-1)
    per_caption = (per_token * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)
    return per_caption.mean() * temperature**2


def embedding_match(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cosine between student rows and (L2-normalised) teacher rows."""
    return 1 - (F.normalize(student.float(), dim=-1) * teacher).sum(dim=-1).mean()


def onto_grid(teacher: torch.Tensor, tokens: int) -> torch.Tensor:
    """A teacher's (images x tokens x width) values on a square grid of ``tokens``: average-pooled from a
    finer grid, repeated from a coarser one."""
    if teacher.shape[1] == tokens:
        return teacher
    side = math.isqrt(teacher.shape[1])
    grid = teacher.transpose(1, 2).reshape(teacher.shape[0], teacher.shape[2], side, side)
    return F.adaptive_avg_pool2d(grid.float(), math.isqrt(tokens)).flatten(2).transpose(1, 2)


def token_match(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cosine between each student image token and the teacher's at the same place."""
    teacher = F.normalize(onto_grid(teacher, student.shape[1]).float(), dim=-1)
    return embedding_match(student.flatten(0, 1), teacher.flatten(0, 1))


def token_object_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of each image token's object distribution, averaged over tokens."""
    teacher = onto_grid(teacher_logits.float().softmax(dim=-1), student_logits.shape[1]).clamp(min=1e-8)
    student = F.log_softmax(student_logits.float(), dim=-1)
    return (teacher * (teacher.log() - student)).sum(dim=-1).mean()


def _teacher_config(teacher_folder: str | None, field: str, weight: float) -> int:
    if teacher_folder is None or weight <= 0:
        return 0
    return int(json.loads((Path(teacher_folder) / "config.json").read_text()).get(field, 0))


def teacher_width(teacher_folder: str | None, config: DistillConfig) -> int:
    """The teacher encoder's width when the student matches its image tokens, else 0."""
    return _teacher_config(teacher_folder, "encoder_hidden_size", config.feature_weight)


def teacher_object_classes(teacher_folder: str | None, config: DistillConfig) -> int:
    """The classes of the teacher's per-token object head when the student learns its predictions, else 0."""
    return _teacher_config(teacher_folder, "object_classes", config.object_weight)


class TeacherTargetDataset(CaptionDataset):
    """Caption samples that also carry their teacher targets: (image row, text row) in the embedding
    matrices, and the image as the teacher sees it when the KL term needs another preprocessing."""

    def __init__(self, base: CaptionDataset, targets: TeacherTargets, teacher_transform: Transform | None) -> None:
        super().__init__(base.records, base.transform, base.tokenize, base.skipped)
        self.teacher_targets = targets if targets.image_embeddings is not None else None
        if self.teacher_targets is not None:
            missing = [r for r in self.records if str(r.image_path) not in targets.image_rows]
            missing += [r for r in self.records if r.text not in targets.text_rows]
            if missing:
                raise ValueError(f"no teacher embedding for {missing[0].image_path} ({missing[0].text!r})")
        self.teacher_transform = teacher_transform

    def _load(self, rec: CaptionRecord) -> tuple:
        pixels, ids = super()._load(rec)
        rows = None
        if self.teacher_targets is not None:
            rows = torch.tensor(
                [self.teacher_targets.image_rows[str(rec.image_path)], self.teacher_targets.text_rows[rec.text]]
            )
        teacher_pixels = None
        if self.teacher_transform is not None:
            with Image.open(rec.image_path) as im:
                teacher_pixels = self.teacher_transform(im.convert("RGB"))
        return pixels, ids, rows, teacher_pixels


class DistillObjective(Objective):
    """The distillation terms; the teacher model is loaded in each process by :meth:`prepare`."""

    def __init__(self, targets_folder: str, teacher_folder: str | None, config: DistillConfig) -> None:
        self.targets_folder, self.teacher_folder, self.config = targets_folder, teacher_folder, config
        self.weights = {"kl_loss": config.kl_weight, "embed_loss": config.embed_weight}
        self.weights.update(feature_loss=config.feature_weight, object_kl=config.object_weight)
        self.wants_embeds = config.embed_weight > 0
        self.features = teacher_width(teacher_folder, config) > 0
        self.wants_objects = teacher_object_classes(teacher_folder, config) > 0
        self.teacher = self.vocab = self.targets = self.teacher_transform = None
        self.kl_reason = "not prepared"

    def prepare(self, tokenizer: Any, image_processor: Any, device: torch.device) -> None:
        self.targets = load_targets(Path(self.targets_folder))
        self.wants_embeds = self.config.embed_weight > 0 and self.targets.image_embeddings is not None
        if self.wants_embeds:
            self.image_targets = F.normalize(torch.from_numpy(self.targets.image_embeddings).to(device), dim=-1)
            self.text_targets = F.normalize(torch.from_numpy(self.targets.text_embeddings).to(device), dim=-1)
        self.kl_reason = self._prepare_teacher(tokenizer, image_processor, device)

    def _prepare_teacher(self, tokenizer: Any, image_processor: Any, device: torch.device) -> str:
        """Loads a capfleet teacher for the KL, image-token and object terms; returns why KL is used or not."""
        if self.teacher_folder is None:
            return "off: the teacher is not a capfleet model, so its tokens do not line up with the student's"
        from .tokenization import load_bundle

        teacher, teacher_tokenizer, teacher_processor = load_bundle(self.teacher_folder)
        vocab = vocabulary_map(tokenizer, teacher_tokenizer) if self.config.kl_weight > 0 else None
        if vocab is not None or self.features or self.wants_objects:
            self.teacher = teacher.to(device).eval().requires_grad_(False)
            self.vocab = vocab.to(device) if vocab is not None else None
            if teacher_processor.to_dict() != image_processor.to_dict():
                self.teacher_transform = image_transform(teacher_processor)
        if self.config.kl_weight <= 0:
            return "off (--kl-weight 0)"
        if vocab is None:
            return "off: the student's vocabulary has words the teacher's lacks"
        return "on: the student's vocabulary is within the teacher's"

    def dataset(
        self, records: Sequence[CaptionRecord], transform: Transform, tokenize: Tokenize, skipped: Counter, targets=None
    ):
        if targets is not None:
            raise ValueError("distill does not take --object-loss-weight: the teacher's targets replace it")
        base = super().dataset(records, transform, tokenize, skipped)
        return TeacherTargetDataset(base, self.targets, self.teacher_transform)

    def collate(self, batch: Sequence[tuple], pad_id: int = 0) -> dict[str, torch.Tensor]:
        out = collate([sample[:2] for sample in batch], pad_id)
        if batch[0][2] is not None:
            out["teacher_rows"] = torch.stack([sample[2] for sample in batch])
        if batch[0][3] is not None:
            out["teacher_pixel_values"] = torch.stack([sample[3] for sample in batch])
        return out

    def losses(self, out: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = {}
        if self.teacher is not None:
            pixels = batch.get("teacher_pixel_values", batch["pixel_values"])
            with torch.no_grad():
                if self.vocab is not None:
                    ids, mask = self.vocab[batch["input_ids"]], batch["attention_mask"]
                    teacher_out = self.teacher(pixel_values=pixels, input_ids=ids, attention_mask=mask)
                    teacher_tokens = teacher_out.encoder_last_hidden_state
                else:
                    teacher_tokens = self.teacher.encoder(pixels).last_hidden_state
            if self.vocab is not None:
                teacher_logits = teacher_out.logits[..., self.vocab]
                terms["kl_loss"] = token_kl(out.logits, teacher_logits, batch["labels"], self.config.kl_temperature)
            if self.features:
                if out.distill_features is None:
                    raise ValueError("the student being resumed has no image-token head: pass --feature-weight 0")
                terms["feature_loss"] = token_match(out.distill_features, teacher_tokens)
            if self.wants_objects:
                classes = self.teacher.config.object_classes  # the class logits; a teacher's rank logits are its own
                teacher_objects = self.teacher.object_head(teacher_tokens)[..., :classes]
                terms["object_kl"] = token_object_kl(out.object_logits[..., :classes], teacher_objects)
        if self.wants_embeds:
            rows = batch["teacher_rows"]
            image = embedding_match(out.image_embeds, self.image_targets[rows[:, 0]])
            text = embedding_match(out.text_embeds, self.text_targets[rows[:, 1]])
            terms["embed_loss"] = (image + text) / 2
        return terms


def _student_overrides(
    overrides: dict[str, Any], targets: TeacherTargets, config: DistillConfig, teacher_folder: str | None
) -> dict[str, Any]:
    """The student's heads project to the teacher's embedding width when embeddings are matched, its
    image tokens to the teacher encoder's width when they are matched, and to the teacher's object
    classes when it learns the teacher's per-token object predictions; a student with that object map
    grounds its relation words in it when the teacher does (modeling/relation_grounding.py)."""
    overrides = {**overrides, "feature_distill_dim": teacher_width(teacher_folder, config)}
    if classes := teacher_object_classes(teacher_folder, config):
        overrides["object_classes"] = classes
        grounded = bool(_teacher_config(teacher_folder, "ground_relations", config.object_weight))
        overrides.setdefault("ground_relations", grounded)
    dim = targets.embedding_dim
    if dim is None or config.embed_weight <= 0:
        return overrides
    if overrides.get("projection_dim", dim) != dim:
        raise ValueError(
            f"projection_dim {overrides['projection_dim']} differs from the teacher's embedding width {dim}: "
            "drop it from --model-overrides, or pass --embed-weight 0"
        )
    return {**overrides, "projection_dim": dim}


def _teacher_settings(data_dir: str | list[str], config: DistillConfig, seed: int) -> TeacherSettings:
    from capfleet.models.registry import default_scorer

    data = [data_dir] if isinstance(data_dir, str) else list(data_dir)
    for folder in data:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"DATA {folder}: no such folder")
    scorer = default_scorer(config.teacher) if config.teacher_scorer == "auto" else config.teacher_scorer
    if scorer == "none" and config.embed_weight > 0:
        raise ValueError("matching the teacher's embeddings needs a teacher scorer: pass --teacher-scorer or "
                         "--embed-weight 0")  # fmt: skip
    return TeacherSettings(
        captioner=config.teacher,
        scorer=scorer,
        data=tuple(str(Path(folder).resolve()) for folder in data),
        candidates=config.teacher_candidates,
        decoding=config.teacher_decoding,
        max_new_tokens=config.teacher_max_new_tokens,
        data_captions=config.data_captions,
        seed=seed,
    )


def distill_main(
    data_dir: str | list[str], output_dir: str, config: DistillConfig, nproc: int = 1, **options: Any
) -> DistillResult:
    """``capfleet distill``: the teacher pass (rank 0; cached in ``output_dir/teacher``), then the
    student's training. ``options`` are TrainConfig fields; ``nproc > 1`` trains in local DDP
    processes, and under torchrun every rank calls this."""
    settings = _teacher_settings(data_dir, config, options.get("seed", 0))
    teacher_folder = capfleet_model_folder(config.teacher)
    info = D.init_distributed(options.get("device", "auto"))
    try:
        if info.is_main:
            run_teacher(output_dir, settings, options.get("device", "auto"), options.get("progress", True))
        D.barrier(info)
        targets = load_targets(Path(output_dir) / TEACHER_DIR)
        overrides = _student_overrides(options.pop("model_overrides", {}), targets, config, teacher_folder)
        objective = DistillObjective(str(targets.folder), teacher_folder, config)
        if info.is_main:
            saved = {"distill": asdict(config), "teacher_settings": asdict(settings)}
            (Path(output_dir) / DISTILL_CONFIG).write_text(json.dumps(saved, indent=2))
        result = train_main(
            str(targets.folder),
            output_dir,
            nproc=1 if info.enabled else nproc,
            objective=objective,
            caption_mode=settings.caption_mode,
            model_overrides=overrides,
            **options,
        )
    finally:
        D.cleanup_distributed(info)
    logged = _logged_terms(Path(output_dir) / "train_log.jsonl")
    return DistillResult(
        train=result,
        kl="kl_loss" in logged,
        kl_reason=_kl_reason(objective, logged),
        embed="embed_loss" in logged,
        features="feature_loss" in logged,
        objects="object_kl" in logged,
        teacher_images=len(targets.image_rows) or _rows(targets.folder),
    )


def _logged_terms(log_path: Path) -> set[str]:
    if not log_path.is_file():
        return set()
    return {key for line in log_path.read_text().splitlines() if line.strip() for key in json.loads(line)}


def _kl_reason(objective: DistillObjective, logged: set[str]) -> str:
    """Why KL was (not) used: the objective knows in this process; with --nproc it ran in children."""
    if objective.kl_reason != "not prepared":
        return objective.kl_reason
    return "on" if "kl_loss" in logged else "off"


def _rows(folder: Path) -> int:
    return sum(1 for line in (folder / METADATA_NAME).read_text().splitlines() if line.strip())
