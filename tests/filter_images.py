"""Filter test material: rendered text, synth scenes, altered copies, tiny exported ONNX classifiers."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from capfleet.synth import generate_synthetic_dataset


def text_image(lines: list[str], size: tuple[int, int] = (640, 480), seed: int = 0) -> Image.Image:
    """Big dark words on a noisy light background (a poster, a meme, a screenshot)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(225, 8, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=size[1] // 7)
    for index, line in enumerate(lines):
        draw.text((size[0] // 16, size[1] // 8 + index * size[1] // 4), line, fill=(10, 10, 10), font=font)
    return image


def scenes(folder: Path, count: int, size: int = 160, seed: int = 3) -> list[Path]:
    """`capfleet synth` scenes (shapes, no text), sorted in listing order."""
    generate_synthetic_dataset(count, folder, seed=seed, size=size, shard_size=10_000)
    return sorted(folder.glob("*/*.png"))


def skin_blobs(seed: int = 0, side: int = 320) -> Image.Image:
    """Abstract skin-toned ellipses with a darker dot, blurred: a drawing, not a photo, that the real
    NudeNet detector still scores as exposed (0.88 for seed 0 when written). The NSFW filter's tests
    use it to show that the detector's output decides, with no real photo in the repository."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 6)):
        colour = (int(rng.integers(180, 240)), int(rng.integers(120, 180)), int(rng.integers(90, 150)))
        x, y = rng.integers(0, side - 60, 2)
        width, height = rng.integers(40, 200, 2)
        draw.ellipse([x, y, x + width, y + height], fill=colour)
        if rng.random() < 0.7:
            cx, cy = x + width // 2, y + height // 2
            draw.ellipse([cx - 6, cy - 6, cx + 6, cy + 6], fill=(150, 80, 70))
    return image.filter(ImageFilter.GaussianBlur(3))


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def altered_copies(image: Image.Image) -> dict[str, bytes]:
    """The copies a crawl finds: resized, re-encoded at low quality, slightly cropped."""
    width, height = image.size
    return {
        "resized": jpeg_bytes(image.resize((width // 2, height // 2), Image.Resampling.BILINEAR)),
        "reencoded": jpeg_bytes(image, quality=40),
        "cropped": jpeg_bytes(image.crop((2, 2, width - 2, height - 2))),
    }


def export(tmp_path, module, name: str, side: int | None = 32) -> str:
    """torch.onnx.export of a tiny module; side None exports dynamic H and W."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = tmp_path / f"{name}.onnx"
    dynamic = {"image": {0: "n"}} if side else {"image": {0: "n", 2: "h", 3: "w"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module, torch.zeros(1, 3, side or 32, side or 32), str(path), input_names=["image"],
            output_names=["probability"], dynamic_axes=dynamic, dynamo=False,
        )  # fmt: skip
    return str(path)


def redness_classifier():
    """'Watermark' probability = how much redder than blue the image is: red -> ~1, blue -> ~0."""
    import torch

    class Redness(torch.nn.Module):
        def forward(self, image):
            return torch.sigmoid(20 * (image[:, 0].mean((1, 2)) - image[:, 2].mean((1, 2)))).unsqueeze(1)

    return Redness()
