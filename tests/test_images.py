"""Image decoding: every PIL mode to RGB, EXIF rotation, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from graphvision.data.images import UnreadableImageError, load_rgb


def test_grayscale(tmp_path):
    Image.fromarray(np.full((4, 5), 77, np.uint8), "L").save(tmp_path / "g.png")
    out = load_rgb(tmp_path / "g.png")
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and (out == 77).all()


def test_rgba_composited_over_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 255, 0)  # fully transparent
    rgba[1, :] = (0, 0, 0, 128)  # half-transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert np.all(np.abs(out[1, 0].astype(int) - 127) <= 1)


def test_palette(tmp_path):
    img = Image.new("P", (3, 2))
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * (256 * 3 - 6))
    img.putpixel((1, 1), 1)
    img.save(tmp_path / "p.png")
    out = load_rgb(tmp_path / "p.png")
    assert out[1, 1].tolist() == [10, 200, 30] and out[0, 0].tolist() == [0, 0, 0]


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = load_rgb(tmp_path / "d.png")
    assert out[0, :, 0].tolist() == [0, 128, 255]


def _exif_rotated(path):
    arr = np.zeros((16, 32, 3), np.uint8)  # stored 32 wide, 16 high
    arr[:8, :8] = (255, 0, 0)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    img.save(path, exif=exif.tobytes(), quality=100)


def test_exif_rotation_applied(tmp_path):
    _exif_rotated(tmp_path / "r.jpg")
    out = load_rgb(tmp_path / "r.jpg")
    assert out.shape == (32, 16, 3)
    assert out[3, 12, 0] > 200 and out[3, 12, 1] < 60  # the red corner moved to the top right
    assert out[3, 3, 0] < 60


def test_exif_rotation_not_applied_when_annotation_matches_stored_pixels(tmp_path):
    _exif_rotated(tmp_path / "r.jpg")
    assert load_rgb(tmp_path / "r.jpg", expected_size=(32, 16)).shape == (16, 32, 3)
    assert load_rgb(tmp_path / "r.jpg", expected_size=(16, 32)).shape == (32, 16, 3)


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(UnreadableImageError, match="empty.jpg.*0 bytes"):
        load_rgb(tmp_path / "empty.jpg")


def test_truncated_file(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        tmp_path / "t.jpg"
    )
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match="t.jpg"):
        load_rgb(tmp_path / "t.jpg")


def test_not_an_image(tmp_path):
    (tmp_path / "x.png").write_text("this is not a PNG")
    with pytest.raises(UnreadableImageError, match="x.png"):
        load_rgb(tmp_path / "x.png")


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableImageError, match="no such file"):
        load_rgb(tmp_path / "nope.png")
