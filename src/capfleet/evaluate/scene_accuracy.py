"""Object and relation accuracy of captions on synth datasets, whose rows record the scene graph.

A caption can score a high CIDEr while naming the wrong shapes; these two numbers say how often the
caption is *right* about the picture (see :mod:`capfleet.synth.grounding` for the exact rules).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from capfleet.evaluate.references import ReferenceSet
from capfleet.synth import Scene
from capfleet.synth.grounding import objects_right, relations_right


def scenes_of(references: ReferenceSet) -> dict[str, Scene]:
    """{key: scene} for the references that carry a readable scene graph (synth datasets)."""
    scenes = {}
    for key, ref in references.rows.items():
        if ref.scene:
            try:
                scenes[key] = Scene.from_dict(json.loads(ref.scene))
            except (ValueError, KeyError, TypeError):
                continue  # a hand-edited or foreign "scene" column: no ground truth for this row
    return scenes


def scene_accuracy(scenes: Mapping[str, Scene], texts: Mapping[str, str]) -> dict[str, Any] | None:
    """Shares of captions that name exactly the scene's (colour, shape) objects, and whose spatial claims
    all hold (over the captions that make one); None when no caption has a scene to check against."""
    keys = [k for k in texts if k in scenes]
    if not keys:
        return None
    objects = sum(objects_right(texts[k], scenes[k]) for k in keys)
    relations = [r for r in (relations_right(texts[k], scenes[k]) for k in keys) if r is not None]
    return {
        "object_accuracy": objects / len(keys),
        "relation_accuracy": sum(relations) / len(relations) if relations else None,
        "images": len(keys),
        "captions_with_relations": len(relations),
    }
