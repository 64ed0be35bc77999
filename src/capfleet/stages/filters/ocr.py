"""Text overlays: the PP-OCR ONNX models shipped in rapidocr_onnxruntime's wheel (extra `ocr`).

Detection runs on the image shrunk to DETECT_SIDE (the cost that every image pays); recognition
runs only on the boxes found, and only boxes it reads as words count towards the text area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capfleet.errors import require
from capfleet.options import option
from capfleet.sample import Sample
from capfleet.stages.filters.base import PANEL, load_once, reject

NAME = "ocr"
EXTRA = "ocr"
REQUIRES = ("rapidocr_onnxruntime",)
PREPASS = False

DETECT_SIDE = 256  # longest side for detection: captions and watermarks stay legible to the detector
DECODE_SIDE = 384  # shortest side the recogniser reads text from (decoding shrinks no further)
MIN_TEXT_SCORE = 0.5  # recognised lines below this confidence are noise, not text


@dataclass
class Options:
    max_text_area: float | None = option(
        None,
        "Filter images whose OCR text boxes cover more than this fraction (extra 'ocr').",
        fingerprint="if_set",
        panel=PANEL,
    )


def check(config) -> list[str]:
    if config.max_text_area is not None and not 0 <= config.max_text_area <= 1:
        return ["--max-text-area must be in [0, 1]"]
    return []


def load(config) -> TextOverlayFilter | None:
    """On with --max-text-area, or to fill a prompt's {ocr_text}."""
    if config.max_text_area is None and "{ocr_text}" not in (config.prompt or ""):
        return None
    return TextOverlayFilter(config.max_text_area)


def _engine():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)


class TextOverlayFilter:
    """Scores `text_area` (fraction of the image covered by text boxes) and `ocr_text`."""

    name = "text_area"
    decode_side = DECODE_SIDE

    def __init__(self, max_text_area: float | None):
        require(REQUIRES, EXTRA, "--max-text-area / {ocr_text}")
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

        self.max_text_area = max_text_area
        self.engine = load_once(("rapidocr",), _engine)
        detector = self.engine.text_det
        # Our own stateless preprocessing: TextDetector.__call__ stores one per call (not thread-safe).
        self.preprocess = DetPreProcess(DETECT_SIDE, "max", detector.mean, detector.std)

    def detect(self, bgr: np.ndarray) -> list[np.ndarray]:
        """Text boxes (4 corner points each) in the coordinates of `bgr`."""
        detector = self.engine.text_det
        batch = self.preprocess(bgr)
        if batch is None:
            return []
        boxes, _ = detector.postprocess_op(detector.infer(batch)[0], bgr.shape[:2])
        return list(detector.filter_tag_det_res(boxes, bgr.shape[:2]))

    def read(self, bgr: np.ndarray, boxes: list[np.ndarray]) -> list[tuple[np.ndarray, str]]:
        """The boxes whose recognised text is confident and holds 2+ letters or digits, with it.

        The detector, trained on dense scripts, also boxes big blobs and stars; reading them
        back is what tells a word from a shape.
        """
        boxes = self.engine.sorted_boxes(np.array(boxes))
        lines, _ = self.engine.text_rec(self.engine.get_crop_img_list(bgr, boxes))
        return [
            (box, text.strip())
            for box, (text, score) in zip(boxes, lines, strict=True)
            if score >= MIN_TEXT_SCORE and sum(char.isalnum() for char in text) >= 2
        ]

    def apply(self, sample: Sample) -> None:
        import cv2

        bgr = np.ascontiguousarray(np.asarray(sample.image)[:, :, ::-1])
        boxes = self.detect(bgr)
        found = self.read(bgr, boxes) if boxes else []
        mask = np.zeros(bgr.shape[:2], np.uint8)
        if found:
            cv2.fillPoly(mask, [box.astype(np.int32) for box, _ in found], 1)  # union: overlaps count once
        area = round(float(mask.mean()), 4)
        if self.max_text_area is not None and area > self.max_text_area:
            reject(sample, self.name, area, self.max_text_area)
            return
        sample.fields["text_area"] = area
        sample.fields["ocr_text"] = " ".join(text for _, text in found)
