"""Whole-file structure checks for JPEG and PNG: how a model-free run validates without decoding pixels.

A run without a model or filter only has to know that a file is a whole image. Decoding every
pixel (even a JPEG at 1/8 scale) costs 10-20x copying its bytes; these walks cost next to nothing
for a JPEG and about one CRC pass for a PNG (benchmarks/bench_checks.py), and still catch a
truncated file: a JPEG must have its frame header, its scan and its end marker at the end, a PNG
every chunk whole with a matching CRC, IHDR first and IEND last. The walk also reads the size
from the frame header (JPEG) or IHDR (PNG), so a whole file needs no `Image.open`, whose header
parsing in Python was most of a model-free run's cost. `whole_image` never rejects: None only means
"not proven whole", and the caller then decodes, which gives the error its reason (and accepts a
JPEG with bytes appended after its end marker, such as a motion photo).
What it does not see: damage inside a JPEG's entropy-coded data, which Pillow mostly decodes
anyway (as grey blocks) rather than refusing.
"""

from __future__ import annotations

import struct
import zlib

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_END_SLACK = 2  # bytes allowed after EOI (some encoders pad); more: decode to be sure


def whole_image(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) when `data` is a structurally whole JPEG or PNG, else None (decode instead)."""
    try:
        if data[:2] == b"\xff\xd8":
            size = _jpeg_size(data)
            return ("JPEG", *size) if size else None
        if data[:8] == _PNG_SIGNATURE:
            size = _png_size(data)
            return ("PNG", *size) if size else None
    except (IndexError, struct.error):
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position, size = 2, None
    while True:  # marker segments up to the first scan
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0xDA:  # start of scan: its header, then entropy-coded data
            break
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # frame header: precision, height, width
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            size = (width, height)
        position += 2 + length
    (length,) = struct.unpack(">H", data[position + 2 : position + 4])
    scan_data = position + 2 + length
    end = data.rfind(b"\xff\xd9", max(scan_data, len(data) - 2 - _JPEG_END_SLACK))
    return size if size and min(size) > 0 and end >= scan_data else None


def _png_size(data: bytes) -> tuple[int, int] | None:
    position, kinds = 8, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        if end > len(data):
            return None
        if zlib.crc32(data[position + 4 : end - 4]) != struct.unpack(">I", data[end - 4 : end])[0]:
            return None
        kinds.append(kind)
        position = end
    if not kinds or kinds[0] != b"IHDR" or kinds[-1] != b"IEND" or b"IDAT" not in kinds:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return (width, height) if width and height else None
