"""Object-presence targets for the auxiliary grounding loss, read from a synth dataset's ``scene`` column.

The captioning loss alone let the built-in model learn colours but not shapes: on held-out scenes its
greedy caption got the colours right and a shape wrong for two thirds of the images. One multi-label
target per image -- which of the synth world's colour+shape objects it holds -- trains the image encoder
to see (and bind) both, where the caption's few shape tokens are a weak, late signal.
"""

from __future__ import annotations

import json

import torch

from capfleet.synth.scene import COLOURS, SHAPES

OBJECT_CLASSES = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)
_INDEX = {name: i for i, name in enumerate(OBJECT_CLASSES)}
UNKNOWN = -1.0  # a target entry with no ground truth (the row has no readable scene); masked out of the loss


def object_targets(scene: str) -> torch.Tensor:
    """Multi-hot float vector over OBJECT_CLASSES for one ``scene`` JSON string; all UNKNOWN when the
    string is empty, not a synth scene graph, or names an object outside the synth vocabulary."""
    target = torch.zeros(len(OBJECT_CLASSES))
    try:
        for shape in json.loads(scene)["shapes"]:
            target[_INDEX[f"{shape['colour']} {shape['shape']}"]] = 1.0
    except (ValueError, KeyError, TypeError):
        return torch.full((len(OBJECT_CLASSES),), UNKNOWN)
    return target
