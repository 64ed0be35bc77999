"""Builds the awkward inputs a web crawl delivers, each labelled with what must happen to it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

OK = "ok"
ERROR = "error"


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def write_zoo(folder: Path) -> dict[str, str]:
    """Write every case into `folder`; returns file name -> expected outcome (ok / error)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def put(name: str, data: bytes, outcome: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = outcome

    plain = _jpeg_bytes(_noise(64, 48))
    put("plain.jpg", plain, OK)
    put("truncated.jpg", plain[: len(plain) // 2], ERROR)
    put("zero-bytes.png", b"", ERROR)
    put("random-bytes.jpg", np.random.default_rng(1).bytes(2048), ERROR)
    put("error-page.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", ERROR)
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")  # 100 MP > Pillow's 89 MP default cap
    put("bomb.png", bomb.getvalue(), ERROR)
    put("cmyk.jpg", _jpeg_bytes(_noise(40, 30).convert("CMYK")), OK)
    sixteen = io.BytesIO()
    Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).save(sixteen, "PNG")
    put("sixteen-bit.png", sixteen.getvalue(), OK)
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.info["transparency"] = 0
    transparent = io.BytesIO()
    palette.save(transparent, "PNG", transparency=0)
    put("palette-transparent.png", transparent.getvalue(), OK)
    rgba = io.BytesIO()
    Image.new("RGBA", (16, 16), (0, 0, 255, 0)).save(rgba, "PNG")
    put("rgba.png", rgba.getvalue(), OK)
    frames = [Image.new("RGB", (24, 24), color) for color in ("red", "green", "blue")]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    put("animated.gif", animated.getvalue(), OK)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    put("exif-rotated.jpg", _jpeg_bytes(_noise(80, 40), exif=exif.tobytes()), OK)
    put("one-pixel.png", _png(Image.new("RGB", (1, 1), "white")), OK)
    put("wide-10x1.png", _png(_noise(400, 40)), OK)
    put("extreme-100x1.png", _png(_noise(1000, 10)), ERROR)
    put("grey.webp", _encode(Image.new("L", (30, 30), 128), "WEBP"), OK)
    put("tiny.bmp", _encode(_noise(12, 12), "BMP"), OK)
    put("page.tiff", _encode(_noise(20, 20), "TIFF"), OK)
    put("ünïcødé name with spaces.png", _png(_noise(32, 32, seed=3)), OK)
    return expected


def _png(image: Image.Image) -> bytes:
    return _encode(image, "PNG")


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write_noise_images(folder: Path, count: int, size: tuple[int, int] = (48, 40)) -> list[Path]:
    """`count` distinct small JPEGs named img-000.jpg, ... (their order is the listing order)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"img-{index:03d}.jpg"
        path.write_bytes(_jpeg_bytes(_noise(*size, seed=index)))
        paths.append(path)
    return paths
