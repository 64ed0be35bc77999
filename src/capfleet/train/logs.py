"""Training log (JSONL, one row per logged optimizer step) and its loss plot."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from capfleet.errors import MissingExtra, require


def truncate_log(path: Path, upto_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be written again),
    and a torn last line a killed process left half-written."""
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines() if (_step(ln) or upto_step + 1) <= upto_step]
        path.write_text("".join(ln + "\n" for ln in keep))


def _step(line: str) -> int | None:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None


def plot_losses(log_path: Path, out_path: Path) -> Path | None:
    """PNG of every ``*loss`` series in the JSONL log; skipped with a warning without matplotlib."""
    try:
        require(("matplotlib",), "train", "the loss plot")
    except MissingExtra as missing:
        warnings.warn(f"{missing}; skipping it", stacklevel=2)
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln.strip()]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in sorted({k for r in rows for k in r if k.endswith("loss")}):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key, marker="o" if len(pts) < 30 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
