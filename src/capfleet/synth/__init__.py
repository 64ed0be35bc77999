"""Procedural synthetic scenes with ground-truth captions, for training and testing captioners.

Scenes are sampled as graphs (shapes, colours, sizes, positions, relations, background), drawn with
PIL and captioned from the graph, so every caption is true of its image. Entry point for
``capfleet synth N -o DIR``: :func:`generate_synthetic_dataset`.
"""

from .render import render_scene
from .scene import (
    COLOURS,
    SHAPES,
    SIZES,
    VOCABULARY,
    Background,
    Relation,
    Scene,
    Shape,
    describe,
    relate,
    sample_scene,
)
from .writer import Example, SynthSummary, generate_synthetic_dataset, make_example

__all__ = [
    "COLOURS",
    "SHAPES",
    "SIZES",
    "VOCABULARY",
    "Background",
    "Example",
    "Relation",
    "Scene",
    "Shape",
    "SynthSummary",
    "describe",
    "generate_synthetic_dataset",
    "make_example",
    "relate",
    "render_scene",
    "sample_scene",
]
