"""Read ground-truth references and predicted captions from capfleet imagefolder datasets and pair them by key.

Both sides are ``DIR/NNNNN/metadata.jsonl`` folders (``capfleet synth`` or ``capfleet caption`` output).
Broken rows are counted, never raised: one bad line must not stop the evaluation of a large dataset.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from capfleet.metadata_jsonl import METADATA_NAME, metadata_files, metadata_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    key: str
    captions: tuple[str, ...]  # every reference phrasing, never empty
    image_path: Path
    source: str = ""
    scene: str = ""  # synth's scene graph as JSON (``Scene.to_dict``), "" for other datasets


@dataclass(frozen=True)
class Prediction:
    key: str
    text: str
    candidates: tuple[str, ...] = ()
    source: str = ""


@dataclass
class ReferenceSet:
    rows: dict[str, Reference] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)

    def captions(self) -> dict[str, list[str]]:
        return {key: list(ref.captions) for key, ref in self.rows.items()}


@dataclass
class PredictionSet:
    rows: dict[str, Prediction] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)

    def texts(self) -> dict[str, str]:
        return {key: pred.text for key, pred in self.rows.items()}


def _strings(value) -> list[str]:
    return [v.strip() for v in value if isinstance(v, str) and v.strip()] if isinstance(value, list) else []


def _rows(root: Path, skipped: Counter) -> Iterator[tuple[Path, dict]]:
    """(shard folder, row) for every parseable row of every shard; a missing dataset is an error, not 0 rows."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    if not metadata_files(root):
        raise FileNotFoundError(f"no */{METADATA_NAME} under {root}: not an imagefolder dataset")
    yield from metadata_rows(root, skipped)


def _key(root: Path, folder: Path, row: dict) -> str:
    """The row's ``key``; rows from foreign imagefolder datasets fall back to their image path."""
    key = row.get("key")
    if isinstance(key, str) and key:
        return key
    return (folder / row["file_name"]).relative_to(root).as_posix()


def reference_captions(row: dict) -> list[str]:
    """``captions`` when present (synth: every phrasing), else ``text`` plus a non-empty ``original_text``."""
    texts = _strings(row.get("captions")) or _strings([row.get("text"), row.get("original_text")])
    return list(dict.fromkeys(texts))  # exact duplicates would double-count one phrasing


def read_references(data_dir: str | Path) -> ReferenceSet:
    """Per key: its reference captions and image path. Rows without a caption or with a repeated key are skipped."""
    root = Path(data_dir)
    result = ReferenceSet()
    for folder, row in _rows(root, result.skipped):
        key, captions = _key(root, folder, row), reference_captions(row)
        if not captions:
            result.skipped["no_caption"] += 1
        elif key in result.rows:
            result.skipped["duplicate_key"] += 1
        else:
            source = row.get("source") if isinstance(row.get("source"), str) else ""
            scene = row.get("scene") if isinstance(row.get("scene"), str) else ""
            result.rows[key] = Reference(key, tuple(captions), folder / row["file_name"], source, scene)
    _warn_skipped(root, result.skipped)
    return result


def read_predictions(predictions_dir: str | Path) -> PredictionSet:
    """Per key: the chosen ``text`` (may be empty: it still counts, and scores 0) and its ``candidates``."""
    root = Path(predictions_dir)
    result = PredictionSet()
    for folder, row in _rows(root, result.skipped):
        key = _key(root, folder, row)
        if not isinstance(row.get("text"), str):
            result.skipped["no_text"] += 1
        elif key in result.rows:
            result.skipped["duplicate_key"] += 1
        else:
            source = row.get("source") if isinstance(row.get("source"), str) else ""
            result.rows[key] = Prediction(key, row["text"].strip(), tuple(_strings(row.get("candidates"))), source)
    _warn_skipped(root, result.skipped)
    return result


def _warn_skipped(root: Path, skipped: Counter) -> None:
    if skipped:
        log.warning("%s: skipped rows %s", root, dict(skipped))


@dataclass(frozen=True)
class Match:
    keys: list[str]  # keys with both a reference and a prediction, sorted
    missing: list[str]  # references without a prediction
    extra: list[str]  # predictions without a reference
    source_mismatch: list[str]  # matched keys whose image file names disagree: keys probably shifted

    def summary(self) -> dict[str, int]:
        return {
            "matched": len(self.keys),
            "missing_predictions": len(self.missing),
            "extra_predictions": len(self.extra),
            "source_mismatch": len(self.source_mismatch),
        }


def _names(path: str) -> str:
    return os.path.basename(path.split("?", 1)[0]) if path else ""


def match(references: ReferenceSet, predictions: Mapping[str, str | Prediction]) -> Match:
    """Pair by key. Caption keys are positions in the input listing, so captioning a sub-folder or a second
    input shifts them silently; a prediction whose ``source`` file name is neither the reference image's nor
    the reference's own ``source`` is flagged (not dropped) so that shows up in the report."""
    refs, preds = references.rows, predictions
    keys = sorted(refs.keys() & preds.keys())
    mismatch = []
    for key in keys:
        pred = preds[key]
        name = _names(pred.source) if isinstance(pred, Prediction) else ""
        if name and name not in (refs[key].image_path.name, _names(refs[key].source)):
            mismatch.append(key)
    result = Match(keys, sorted(refs.keys() - preds.keys()), sorted(preds.keys() - refs.keys()), mismatch)
    if mismatch:
        log.warning(
            "%d matched predictions come from other images than their references (e.g. key %s): "
            "were the predictions captioned from a different input listing?",
            len(mismatch),
            mismatch[0],
        )
    return result
