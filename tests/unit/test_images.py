"""`tune.data.images.read_image`: every mode to upright RGB, bad files refused with the reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tune.cli.predict import load_image
from tune.data.images import read_image
from tune.errors import ImageError

RED, GREEN, WHITE = (255, 0, 0), (0, 255, 0), (255, 255, 255)


def _halves(mode: str, left, right, size=(40, 20)) -> Image.Image:
    """A `mode` image `size` (width, height): `left` on the left half, `right` on the right."""
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def _sides(x: np.ndarray) -> tuple:
    """Mean RGB of the left quarter and of the right quarter, as int tuples."""
    quarter = x.shape[1] // 4
    mean = lambda part: tuple(part.mean((0, 1)).round().astype(int))  # noqa: E731
    return mean(x[:, :quarter]), mean(x[:, -quarter:])


def test_transparent_parts_of_rgba_la_and_palette_images_become_white(tmp_path):
    _halves("RGBA", (0, 0, 255, 0), (255, 0, 0, 255)).save(tmp_path / "rgba.png")  # blue under the clear half
    _halves("LA", (0, 0), (80, 255)).save(tmp_path / "la.png")
    palette = _halves("P", 0, 1)
    palette.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    palette.save(tmp_path / "palette.png", transparency=0)  # index 0 (blue) is transparent
    expected = {"rgba.png": (WHITE, RED), "la.png": (WHITE, (80, 80, 80)), "palette.png": (WHITE, GREEN)}
    for name, sides in expected.items():
        x = read_image(tmp_path / name, (20, 40))
        assert x.dtype == np.uint8 and x.shape == (20, 40, 3), name
        assert _sides(x) == sides, name


def test_cmyk_and_16_bit_grayscale_become_the_same_colours_in_rgb(tmp_path):
    _halves("CMYK", (0, 255, 255, 0), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg", quality=95)  # red | white
    _halves("I;16", 65535, 32896).save(tmp_path / "deep.png")  # white | mid grey on 16 bits
    left, right = _sides(read_image(tmp_path / "cmyk.jpg", (20, 40)))
    assert np.allclose(left, RED, atol=12) and np.allclose(right, WHITE, atol=12)
    assert _sides(read_image(tmp_path / "deep.png", (20, 40))) == (WHITE, (128, 128, 128))


@pytest.mark.parametrize("orientation, corner", [(6, (0, -1)), (8, (-1, 0))])
def test_exif_turned_photos_come_out_upright(orientation, corner, tmp_path):
    stored = np.full((200, 400, 3), 255, np.uint8)  # 400 wide, 200 high, as the camera wrote it
    stored[:50, :50] = RED  # the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation  # 6: turn 90 degrees clockwise to display; 8: anticlockwise
    Image.fromarray(stored).save(tmp_path / "photo.jpg", exif=exif.tobytes(), quality=95)
    x = read_image(tmp_path / "photo.jpg", (40, 20))  # upright it is 200 wide, 400 high
    assert x.shape == (40, 20, 3)
    row, column = corner  # where the red corner must be once upright
    assert np.allclose(x[row, column], RED, atol=40) and np.allclose(x[-1 - row, -1 - column], WHITE, atol=40)


def test_large_jpegs_decode_at_reduced_scale_to_the_requested_size(tmp_path):
    _halves("RGB", RED, GREEN, (1600, 1200)).save(tmp_path / "big.jpg", quality=90)
    x = read_image(tmp_path / "big.jpg", (30, 50))
    assert x.shape == (30, 50, 3)
    left, right = _sides(x)
    assert np.allclose(left, RED, atol=12) and np.allclose(right, GREEN, atol=12)


def test_prediction_reads_exactly_the_pixels_training_reads(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)).save(tmp_path / "x.jpg")
    x = load_image(tmp_path / "x.jpg", (32, 48))
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, read_image(tmp_path / "x.jpg", (32, 48)))


def _truncated_jpeg(path) -> None:
    """A noisy 64x48 JPEG cut to half its bytes (the cut falls in the pixel data)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def test_bad_files_are_refused_naming_the_file_and_the_reason(tmp_path):
    _truncated_jpeg(tmp_path / "cut.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    Image.new("RGB", (100, 80)).save(tmp_path / "wide.png")
    cases = {"cut.jpg": "image file is truncated", "notes.jpg": "not an image", "absent.png": "No such file"}
    for name, reason in cases.items():
        with pytest.raises(ImageError, match=f"cannot read '{tmp_path / name}' as an image: .*{reason}") as err:
            read_image(tmp_path / name, (8, 8))
        assert reason in err.value.reason and "\n" not in str(err.value)
    with pytest.raises(ImageError, match=r"100x80 pixels is above data.max_image_pixels=7999"):
        read_image(tmp_path / "wide.png", (8, 8), max_pixels=7999)
    assert read_image(tmp_path / "wide.png", (8, 8), max_pixels=8000).shape == (8, 8, 3)


def test_pil_decompression_bomb_refusal_is_an_image_error(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses above twice this
    with pytest.raises(ImageError, match="bomb.png' as an image: .*exceeds limit"):
        read_image(tmp_path / "bomb.png", (8, 8))
