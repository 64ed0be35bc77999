"""NSFW: the NudeNet detector ONNX model shipped in the `nudenet` wheel (extra `nsfw`, AGPL-3.0).

The score is the highest confidence of any exposed-nudity detection, 0 when there is none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from capfleet.errors import require
from capfleet.options import option
from capfleet.sample import Sample
from capfleet.stages.filters.base import PANEL, load_once, onnx_session, reject

NAME = "nsfw"
EXTRA = "nsfw"
REQUIRES = ("nudenet",)
PREPASS = False

EXPOSED = {
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
}


@dataclass
class Options:
    nsfw_threshold: float | None = option(
        None, "Filter above this NudeNet score (extra 'nsfw').", fingerprint="if_set", panel=PANEL
    )


def check(config) -> list[str]:
    if config.nsfw_threshold is not None and not 0 <= config.nsfw_threshold <= 1:
        return ["--nsfw-threshold must be in [0, 1]"]
    return []


def load(config) -> NsfwFilter | None:
    return NsfwFilter(config.nsfw_threshold) if config.nsfw_threshold is not None else None


def _detector():
    import nudenet
    from nudenet import NudeDetector

    detector = NudeDetector()
    # Its own session uses every core per call; ours uses one (the reader threads are the parallelism).
    detector.onnx_session = onnx_session(os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx"))
    return detector


class NsfwFilter:
    name = "nsfw"
    # NudeNet's 320n detector reads 320x320: decoded any smaller (a run without a captioner decodes
    # thumbnails, the built-in model 64 px) it would see nothing and pass every image.
    decode_side = 320

    def __init__(self, threshold: float):
        require(REQUIRES, EXTRA, "--nsfw-threshold")
        self.threshold = threshold
        self.detector = load_once(("nudenet",), _detector)

    def score(self, image) -> float:
        bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
        found = [d["score"] for d in self.detector.detect(bgr) if d["class"] in EXPOSED]
        return round(float(max(found, default=0.0)), 4)

    def apply(self, sample: Sample) -> None:
        score = self.score(sample.image)
        if score > self.threshold:
            reject(sample, self.name, score, self.threshold)
        else:
            sample.fields["nsfw_score"] = score
