"""``capfleet eval``: score captions against a dataset's references (COCO metrics, CLIPScore, retrieval).

``clip_score`` is not re-exported here: the name would hide the submodule of the same name.
"""

from capfleet.evaluate.caption_metrics import caption_scores, java_available, most_frequent_caption_baseline
from capfleet.evaluate.references import match, read_predictions, read_references
from capfleet.evaluate.report import evaluate, evaluate_predictions, format_table, write_json
from capfleet.evaluate.retrieval import retrieval_recall

__all__ = [
    "caption_scores",
    "evaluate",
    "evaluate_predictions",
    "format_table",
    "java_available",
    "match",
    "most_frequent_caption_baseline",
    "read_predictions",
    "read_references",
    "retrieval_recall",
    "write_json",
]
