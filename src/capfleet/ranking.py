"""Which candidate caption wins: one rule for dataset runs, the Python API and the service."""

from __future__ import annotations


def best_candidate(scores: list[float]) -> int:
    """Index of the highest-scored candidate; the first (generation order) when nothing was scored."""
    return max(range(len(scores)), key=scores.__getitem__) if scores else 0
