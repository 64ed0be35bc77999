"""``capfleet eval``: caption metrics, CLIPScore and retrieval for one dataset, as a dict, a table and JSON.

Predictions come either from a caption output folder or as a ready key -> caption mapping (a model run
in-process), so both CLI modes share one code path. Images are embedded once and reused by every metric.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from capfleet.evaluate.caption_metrics import JAVA_HINT, METRICS, caption_scores, java_available
from capfleet.evaluate.clip_score import (
    BATCH_SIZE,
    PREFIX,
    WEIGHT,
    clip_scores,
    embed_images,
    embed_texts,
    ref_clip_scores,
)
from capfleet.evaluate.references import Prediction, ReferenceSet, match, read_predictions, read_references
from capfleet.evaluate.retrieval import retrieval_recall
from capfleet.evaluate.scene_accuracy import scene_accuracy, scenes_of
from capfleet.protocols import Scorer

log = logging.getLogger(__name__)


def evaluate(
    data_dir: str | Path,
    predictions_dir: str | Path | None = None,
    scorer: Any = None,
    *,
    predictions: Mapping[str, str | Prediction] | None = None,
    tokenizer: str = "auto",
    meteor: bool = True,
    retrieval: bool = True,
    batch_size: int = BATCH_SIZE,
    device: str = "auto",
) -> dict[str, Any]:
    """Evaluate ``data_dir``'s references against predictions from ``predictions_dir`` or ``predictions``.

    ``scorer``: a loaded scorer, a name/path for ``capfleet.models.load_scorer``, or None (no CLIPScore, no
    retrieval). With neither predictions source, only the scorer's retrieval over the references is measured.
    """
    if predictions_dir is not None and predictions is not None:
        raise ValueError("pass predictions_dir or predictions, not both")
    references = read_references(data_dir)
    results: dict[str, Any] = {"data_dir": str(data_dir), "predictions_dir": None, "warnings": []}
    if predictions_dir is not None:
        results["predictions_dir"] = str(predictions_dir)
        if os.path.realpath(predictions_dir) == os.path.realpath(data_dir):
            _warn(results, "predictions and references are the same folder: its chosen `text` is a reference")
        read = read_predictions(predictions_dir)
        predictions = read.rows
        results["predictions_skipped"] = dict(read.skipped)
    if isinstance(scorer, str):
        from capfleet.models import load_scorer

        scorer = load_scorer(scorer, device=device)
    metrics = evaluate_predictions(references, predictions, scorer, tokenizer, meteor, retrieval, batch_size)
    metrics["warnings"] = results["warnings"] + metrics["warnings"]
    results.update(metrics)
    return results


def _warn(results: dict[str, Any], message: str, logged: bool = False) -> None:
    """Keep the warning in the results (JSON, table); log it unless the callee already did."""
    results["warnings"].append(message)
    if not logged:
        log.warning(message)


def evaluate_predictions(
    references: ReferenceSet,
    predictions: Mapping[str, str | Prediction] | None,
    scorer: Scorer | None = None,
    tokenizer: str = "auto",
    meteor: bool = True,
    retrieval: bool = True,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """The metrics for already-read references and key -> caption (or ``Prediction``) predictions."""
    refs = references.rows
    results: dict[str, Any] = {
        "references": {
            "images": len(refs),
            "captions": sum(len(r.captions) for r in refs.values()),
            "skipped": dict(references.skipped),
        },
        "scorer": None if scorer is None else scorer.name,
        "warnings": [],
    }
    texts: dict[str, str] = {}
    if predictions is not None:
        matched = match(references, predictions)
        results["matching"] = matched.summary()
        if matched.source_mismatch:
            n = len(matched.source_mismatch)
            _warn(results, f"{n} matched predictions name other image files than their references", logged=True)
        texts = {k: p.text if isinstance(p, Prediction) else p for k, p in ((k, predictions[k]) for k in matched.keys)}
        if texts:
            results["caption_metrics"] = caption_scores(
                {k: list(refs[k].captions) for k in texts}, texts, tokenizer=tokenizer, meteor=meteor
            )
            if meteor and results["caption_metrics"]["METEOR"] is None:
                why = JAVA_HINT if not java_available() else "METEOR failed, see the log"
                _warn(results, f"METEOR unavailable: {why}", logged=True)
            grounded = scene_accuracy(scenes_of(references), texts)
            if grounded is not None:
                results["scene_accuracy"] = grounded
        else:
            _warn(results, "no prediction key matches a reference key")
    if scorer is not None:
        results.update(_embedding_metrics(references, texts, scorer, retrieval, batch_size, results))
    elif predictions is None:
        _warn(results, "nothing to evaluate: give predictions, a model or a scorer")
    return results


def _embedding_metrics(
    references: ReferenceSet, texts: dict[str, str], scorer, retrieval: bool, batch_size: int, results: dict
) -> dict[str, Any]:
    """CLIPScore/RefCLIPScore of the predictions and retrieval recall, from one pass over the images."""
    keys = [k for k, r in references.rows.items() if r.image_path.is_file()]
    if len(keys) < len(references.rows):
        _warn(results, f"{len(references.rows) - len(keys)} reference images are missing: left out of CLIP metrics")
    if not keys:
        return {}
    row = {k: i for i, k in enumerate(keys)}
    images = embed_images(scorer, [references.rows[k].image_path for k in keys], batch_size)
    ref_texts = [(row[k], c) for k in keys for c in references.rows[k].captions]
    ref_owner = torch.tensor([i for i, _ in ref_texts])
    ref_embeddings = embed_texts(scorer, [PREFIX + c for _, c in ref_texts])
    out: dict[str, Any] = {}
    if retrieval:
        out["retrieval"] = {"references": retrieval_recall(images, ref_embeddings, ref_owner)}
    scored = [k for k in texts if k in row]
    if scored:
        idx = torch.tensor([row[k] for k in scored])
        pred_embeddings = embed_texts(scorer, [PREFIX + texts[k] for k in scored])
        clip_s = clip_scores(images[idx], pred_embeddings)
        # references of the scored images only, re-indexed to rows of pred_embeddings
        position = torch.full((len(keys),), -1, dtype=torch.long)
        position[idx] = torch.arange(len(scored))
        keep = position[ref_owner] >= 0
        ref_s = ref_clip_scores(clip_s, pred_embeddings, ref_embeddings[keep], position[ref_owner][keep])
        out["clip"] = {
            "CLIPScore": float(clip_s.mean()),
            "RefCLIPScore": float(ref_s.mean()),
            "images": len(scored),
            "definition": f"{WEIGHT} * max(cos, 0), texts prefixed {PREFIX.strip()!r} (Hessel et al. 2021)",
        }
        if retrieval:
            out["retrieval"]["predictions"] = retrieval_recall(images[idx], pred_embeddings)
    return out


def _value(value: float | None, hint: str = "n/a") -> str:
    return hint if value is None else f"{value:.4f}"


def format_table(results: dict[str, Any]) -> str:
    """A plain-text summary for the terminal (scores unscaled; the JSON has everything)."""
    refs = results["references"]
    lines = [f"dataset      {results.get('data_dir', '')}: {refs['images']} images, {refs['captions']} references"]
    if "matching" in results:
        m = results["matching"]
        lines.append(
            f"predictions  {m['matched']} matched, {m['missing_predictions']} missing, "
            f"{m['extra_predictions']} without reference"
        )
    for name in METRICS:
        if name in results.get("caption_metrics", {}):
            lines.append(f"{name:<13}{_value(results['caption_metrics'][name])}")  # None: see the warnings
    if "scene_accuracy" in results:
        acc = results["scene_accuracy"]
        lines.append(f"{'object acc.':<13}{_value(acc['object_accuracy'])}  (names exactly the scene's objects)")
        lines.append(
            f"{'relation acc.':<13}{_value(acc['relation_accuracy'], 'no spatial claims')}  "
            f"(every spatial claim true, {acc['captions_with_relations']} captions with one)"
        )
    if "clip" in results:
        lines.append(f"{'CLIPScore':<13}{_value(results['clip']['CLIPScore'])}  ({results['scorer']}, w={WEIGHT})")
        lines.append(f"{'RefCLIPScore':<13}{_value(results['clip']['RefCLIPScore'])}")
    if results.get("retrieval"):
        lines.append(f"{'retrieval':<24}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'MedR':>8}")
        for texts, scores in results["retrieval"].items():
            for direction in ("i2t", "t2i"):
                cells = "".join(f"{scores[f'{direction}_R@{k}']:>8.4f}" for k in (1, 5, 10))
                lines.append(f"  {texts + ' ' + direction:<22}{cells}{scores[f'{direction}_MedR']:>8g}")
    lines.extend(f"warning: {w}" for w in results.get("warnings", []))
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: str | Path) -> Path:
    """Write atomically (temp file + rename): a killed run never leaves half a JSON file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path
