from __future__ import annotations

import pytest
from PIL import Image

from capfleet.stages.decode import DecodeError, decode_image
from tests.image_zoo import OK, write_zoo

DEFAULT_MAX_PIXELS = 89_478_485


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    return folder, write_zoo(folder)


def test_every_zoo_case_decodes_or_fails_as_expected(zoo):
    folder, expected = zoo
    for name, outcome in expected.items():
        data = (folder / name).read_bytes()
        if outcome == OK:
            image, extension = decode_image(data, DEFAULT_MAX_PIXELS)
            assert image.mode == "RGB", name
            assert extension.startswith("."), name
        else:
            with pytest.raises(DecodeError):
                decode_image(data, DEFAULT_MAX_PIXELS)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zero-bytes.png", "empty file"),
        ("error-page.jpg", "HTML"),
        ("bomb.png", "too large"),
        ("truncated.jpg", "corrupt"),
        ("random-bytes.jpg", "not an image"),
        ("extreme-100x1.png", "aspect ratio"),
    ],
)
def test_error_reasons_say_what_is_wrong(zoo, name, reason):
    folder, _ = zoo
    with pytest.raises(DecodeError, match=reason):
        decode_image((folder / name).read_bytes(), DEFAULT_MAX_PIXELS)


def test_exif_orientation_is_applied(zoo):
    folder, _ = zoo
    image, _ = decode_image((folder / "exif-rotated.jpg").read_bytes(), DEFAULT_MAX_PIXELS)
    assert image.size == (40, 80)  # stored 80x40, displayed rotated


def test_sixteen_bit_keeps_its_contrast(zoo):
    folder, _ = zoo
    image, _ = decode_image((folder / "sixteen-bit.png").read_bytes(), DEFAULT_MAX_PIXELS)
    low, high = image.convert("L").getextrema()
    assert high - low > 200  # naive conversion clips 16-bit data to white


def test_transparency_goes_on_white(zoo):
    folder, _ = zoo
    image, _ = decode_image((folder / "rgba.png").read_bytes(), DEFAULT_MAX_PIXELS)
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_gives_its_first_frame(zoo):
    folder, _ = zoo
    image, extension = decode_image((folder / "animated.gif").read_bytes(), DEFAULT_MAX_PIXELS)
    red, green, blue = image.getpixel((5, 5))
    assert red > 200 and green < 50 and blue < 50
    assert extension == ".gif"


def test_pixel_cap_is_configurable(zoo):
    folder, _ = zoo
    with pytest.raises(DecodeError, match="--max-pixels 100"):
        decode_image((folder / "plain.jpg").read_bytes(), max_pixels=100)


def test_large_images_are_shrunk_to_the_model_side():
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (2000, 1000), "green").save(buffer, "JPEG")
    image, _ = decode_image(buffer.getvalue(), DEFAULT_MAX_PIXELS, min_side=100)
    assert min(image.size) == 100 and image.size[0] == 200
