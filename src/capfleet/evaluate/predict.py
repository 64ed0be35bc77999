"""`capfleet eval --model M`: caption a reference dataset's images with the caption pipeline.

Predictions are matched back to reference keys by image path, so the pipeline's own keys
(positions in its listing) never have to line up with the dataset's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from capfleet.config import RunConfig
from capfleet.evaluate.references import ReferenceSet, read_predictions
from capfleet.runners.lifecycle import run_caption


def caption_references(refs: ReferenceSet, captioner: str, scorer: str = "none", **options) -> dict[str, str]:
    """{reference key: chosen caption} for every reference image the captioner could read."""
    by_path = {str(ref.image_path.resolve()): key for key, ref in refs.rows.items()}
    with tempfile.TemporaryDirectory(prefix="capfleet-eval-") as temp:
        listing = Path(temp) / "images.txt"
        listing.write_text("".join(f"{path}\n" for path in by_path))
        out = Path(temp) / "captions"
        run_caption(RunConfig(inputs=[str(listing)], output=str(out), captioner=captioner, scorer=scorer, **options))
        predictions = read_predictions(out)
    return {by_path[pred.source]: pred.text for pred in predictions.rows.values() if pred.source in by_path}
