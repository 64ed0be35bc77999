"""Bytes -> RGB image, with the guards a web-scale crawl needs (bombs, HTML pages, odd modes)."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from capfleet.sample import Sample
from capfleet.stages.structure import whole_image

MAX_ASPECT_RATIO = 20.0
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tiff"}
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I", "F")

# Our own pixel cap replaces Pillow's global one, which warns at one size and fails at twice it.
Image.MAX_IMAGE_PIXELS = None


class DecodeError(ValueError):
    """Why these bytes are not a usable image."""


def _sniff(data: bytes) -> None:
    if not data:
        raise DecodeError("empty file (0 bytes)")
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")) or b"<html" in head:
        raise DecodeError("not an image: looks like an HTML/XML page")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten any mode to 8-bit RGB: scale 16-bit/float ranges, put transparency on white."""
    if image.mode in _HIGH_BIT_MODES:
        image = _stretch_to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _stretch_to_8bit(image: Image.Image, rows_per_chunk: int = 256) -> Image.Image:
    """16-bit/int/float grey -> 8-bit, min..max stretched to 0..255, a band of rows at a time.

    Converting the whole array at once goes through float64: 8 bytes a pixel, 650 MB for one
    9000x9000 image. Bands keep the extra memory to a few MB beyond the 8-bit result.
    """
    array = np.asarray(image)
    low, high = float(array.min()), float(array.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    out = np.empty(array.shape, dtype=np.uint8)
    for start in range(0, array.shape[0], rows_per_chunk):
        band = array[start : start + rows_per_chunk].astype(np.float32)
        out[start : start + rows_per_chunk] = np.clip((band - low) * scale, 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="L")


def _shrink(image: Image.Image, min_side: int) -> Image.Image:
    """Downscale so the shorter side is `min_side`: models resize anyway, this keeps memory small."""
    width, height = image.size
    shorter = min(width, height)
    if shorter <= min_side:
        return image
    scale = min_side / shorter
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    gap = None if image.mode in _HIGH_BIT_MODES else 3.0  # Pillow's reduce() has no 16-bit support
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=gap)


@dataclass
class Decoded:
    """A decoded image with what the filters need to know about the file it came from."""

    image: Image.Image | None  # None: only checked (`pixels=False`), never decoded
    extension: str
    width: int  # of the stored image, before any shrinking
    height: int


def decode_image(data: bytes, max_pixels: int, min_side: int | None = 384) -> tuple[Image.Image, str]:
    """Decode, validate and normalise one image; returns (RGB image, file extension of its format).

    Raises DecodeError with a reason fit for an error record: the run goes on without it.
    """
    decoded = decode(data, max_pixels, min_side)
    return decoded.image, decoded.extension


def decode(
    data: bytes,
    max_pixels: int,
    min_side: int | None = 384,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
    pixels: bool = True,
) -> Decoded:
    """`decode_image` with the original size; `max_aspect_ratio` is a guard (an error), not a filter.

    `pixels=False` (nothing will look at the pixels): a JPEG or PNG whose structure is whole
    (`structure.whole_image`) is not even opened and comes back with `image=None`; anything else is decoded.
    """
    _sniff(data)
    whole = whole_image(data) if not pixels else None
    if whole is not None:
        image_format, width, height = whole
        _check_size(width, height, max_pixels, max_aspect_ratio)
        return Decoded(None, EXTENSIONS[image_format], width, height)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            _check_size(width, height, max_pixels, max_aspect_ratio)
            extension = EXTENSIONS.get(image.format or "", ".png")
            if image.format == "JPEG" and min_side:
                image.draft("RGB", (min_side, min_side))  # decode at reduced scale: much faster
            image.load()  # first frame of an animation; raises on truncated data
            image = ImageOps.exif_transpose(image)
            if image.mode in _HIGH_BIT_MODES and min_side:
                image = _shrink(image, min_side)  # before widening to RGB: 16-bit pixels are costly
            image = _to_rgb(image)
    except DecodeError:
        raise
    except Image.UnidentifiedImageError:
        raise DecodeError("not an image: unrecognised format") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"corrupt image: {exc}") from None
    if min_side:
        image = _shrink(image, min_side)
    return Decoded(image, extension, width, height)


def _check_size(width: int, height: int, max_pixels: int, max_aspect_ratio: float) -> None:
    if width * height > max_pixels:
        raise DecodeError(f"image too large: {width}x{height} = {width * height} pixels > --max-pixels {max_pixels}")
    if max(width, height) > max_aspect_ratio * min(width, height):
        raise DecodeError(f"extreme aspect ratio {width}x{height} (more than {max_aspect_ratio:g}:1)")


def normalise_image(image: Image.Image, min_side: int | None = 384) -> Image.Image:
    """An image that is already open (an application's PIL image) made RGB and shrunk like a decoded one."""
    image = _to_rgb(ImageOps.exif_transpose(image))
    return _shrink(image, min_side) if min_side else image


def decode_sample(
    sample: Sample,
    max_pixels: int,
    min_side: int | None,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
    pixels: bool = True,
) -> Sample:
    """The stage function run in worker threads: fills `image` (None when `pixels=False` let it
    skip decoding, see `decode`) and `original_size`, or sets `error`."""
    if sample.error is not None:
        return sample
    try:
        decoded = decode(sample.data or b"", max_pixels, min_side, max_aspect_ratio, pixels)
        sample.image, sample.extension = decoded.image, decoded.extension
        sample.original_size = (decoded.width, decoded.height)
    except DecodeError as exc:
        sample.error = f"decode failed: {exc}"
    except Exception as exc:  # a Pillow plugin bug must not kill the shard
        sample.error = f"decode failed: {type(exc).__name__}: {exc}"
    return sample
