"""Photo decoding (easyphoto_core.images) and the verdict every kind of bad input gets."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from easyphoto_core.images import DecodeLimits, ImageDecodeError, decode_image, read_limited
from easyphoto_core.params import TrainParams
from easyphoto_core.preprocess import InputPhoto, preprocess_photos
from easyphoto_core.workspace import Workspace


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds one row of data: a decompression bomb's
    shape, without the bomb (nothing may decode it before the pixel check)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def obama_small(faces_dir: Path) -> Image.Image:
    return Image.open(faces_dir / "obama_small.jpg").convert("RGB")


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --- decoding --------------------------------------------------------------------------------------


def test_exif_orientation_is_applied(faces_dir):
    upright = Image.open(faces_dir / "obama2.jpg").convert("RGB")  # 626 x 1200, portrait
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a sideways camera stores
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = decode_image(encode(stored, "JPEG", quality=95, exif=exif))
    assert decoded.exif_orientation == 6
    assert decoded.rgb.shape == (1200, 626, 3)
    assert mean_difference(decoded.rgb, np.asarray(upright)) < 4.0


def test_16_bit_grey_keeps_its_tones(obama_small):
    grey8 = np.asarray(obama_small.convert("L"))
    ok, png16 = cv2.imencode(".png", grey8.astype(np.uint16) * 257)
    assert ok
    decoded = decode_image(png16.tobytes())
    assert decoded.source_mode.startswith("I")
    assert decoded.rgb.shape == (*grey8.shape, 3)
    assert mean_difference(decoded.rgb[..., 0], grey8) < 1.0  # not clipped to white


def test_16_bit_colour(obama_small):
    rgb8 = np.asarray(obama_small)
    ok, png16 = cv2.imencode(".png", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    assert ok
    assert mean_difference(decode_image(png16.tobytes()).rgb, rgb8) < 1.0


def test_cmyk_jpeg_comes_out_in_the_right_colours(obama_small):
    decoded = decode_image(encode(obama_small.convert("CMYK"), "JPEG", quality=95))
    assert decoded.source_mode == "CMYK"
    assert mean_difference(decoded.rgb, np.asarray(obama_small)) < 6.0  # not inverted


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_becomes_white(obama_small, mode):
    rgba = obama_small.convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, dtype=np.uint8)
    alpha[:, :100] = 0  # the left strip is transparent
    rgba.putalpha(Image.fromarray(alpha))
    if mode == "P":
        image = rgba.convert("P", palette=Image.Palette.ADAPTIVE)
        image.info["transparency"] = image.getpixel((0, 0))
    else:
        image = rgba.convert(mode)
    decoded = decode_image(encode(image, "PNG")).rgb
    assert decoded[:, :100].min() == 255
    assert decoded[:, 120:].mean() < 200  # the photo itself stays


def test_not_an_image():
    with pytest.raises(ImageDecodeError, match="not an image") as caught:
        decode_image(b"name,age\nada,36\n")
    assert caught.value.reason == "not_an_image"


def test_truncated_jpeg(faces_dir):
    data = (faces_dir / "obama.jpg").read_bytes()
    with pytest.raises(ImageDecodeError, match="truncated") as caught:
        decode_image(data[: len(data) // 2])
    assert caught.value.reason == "truncated"


@pytest.mark.parametrize("side", [7_000, 30_000])  # over our 40 MP; also over Pillow's own limit
def test_too_many_pixels_is_refused_before_decoding(side):
    with pytest.raises(ImageDecodeError, match="pixels") as caught:
        decode_image(png_header_only(side, side))
    assert caught.value.reason == "too_many_pixels"


def test_pixel_limit_is_configurable(obama_small):
    data = encode(obama_small, "PNG")
    assert decode_image(data, limits=DecodeLimits(max_pixels=320 * 240)).rgb.shape == (240, 320, 3)
    with pytest.raises(ImageDecodeError, match="over the limit of 76,799 pixels"):
        decode_image(data, limits=DecodeLimits(max_pixels=320 * 240 - 1))


def test_file_size_limit_is_checked_before_reading(tmp_path, obama_small):
    path = tmp_path / "big.png"
    obama_small.save(path)
    with pytest.raises(ImageDecodeError, match="MiB limit") as caught:
        read_limited(path, DecodeLimits(max_bytes=1000))
    assert caught.value.reason == "too_large"


def test_formats_outside_the_allow_list_are_refused(obama_small):
    with pytest.raises(ImageDecodeError, match="PPM images are not accepted") as caught:
        decode_image(encode(obama_small, "PPM"))
    assert caught.value.reason == "unsupported_format"


# --- through preprocessing: each bad input gets its verdict, the good ones are kept ---------------


@pytest.fixture(scope="module")
def mixed_report(faces_dir, face_models, obama_small, tmp_path_factory):
    upright = Image.open(faces_dir / "obama2.jpg").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    obama = Image.open(faces_dir / "obama.jpg").convert("RGB")
    ok, grey16 = cv2.imencode(".png", np.asarray(obama.convert("L")).astype(np.uint16) * 257)
    assert ok
    transparent = obama_small.convert("RGBA")
    transparent.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 320), (240, 1)).astype(np.uint8)))
    blank = Image.fromarray(np.tile(np.linspace(40, 220, 400), (300, 1)).astype(np.uint8)).convert("RGB")
    tiny = obama.resize((obama.width // 5, obama.height // 5), Image.Resampling.LANCZOS)
    truncated = (faces_dir / "obama3.jpg").read_bytes()
    photos = [
        faces_dir / "obama.jpg",
        faces_dir / "obama3.jpg",
        InputPhoto("rotated.jpg", encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG",
                                         quality=95, exif=exif)),
        InputPhoto("grey16.png", grey16.tobytes()),
        InputPhoto("cmyk.jpg", encode(obama.convert("CMYK"), "JPEG", quality=95)),
        InputPhoto("alpha.png", encode(transparent, "PNG")),
        InputPhoto("notes.jpg", b"not a photo at all"),
        InputPhoto("cut.jpg", truncated[: len(truncated) // 3]),
        InputPhoto("bomb.png", png_header_only(20_000, 20_000)),
        InputPhoto("blank.png", encode(blank, "PNG")),
        InputPhoto("tiny.jpg", encode(tiny, "JPEG", quality=95)),
        InputPhoto("again.jpg", (faces_dir / "obama.jpg").read_bytes()),
        faces_dir / "biden.jpg",
        tmp_path_factory.mktemp("missing") / "gone.jpg",
    ]
    user = Workspace(tmp_path_factory.mktemp("ws")).user("mixed")
    return preprocess_photos(photos, user, TrainParams(), face_models)


EXPECTED = {
    "obama.jpg": (None, "kept"),
    "obama3.jpg": (None, "kept"),
    "rotated.jpg": (None, "kept"),
    "grey16.png": (None, "kept"),
    "cmyk.jpg": (None, "kept"),
    "alpha.png": (None, "kept"),
    "notes.jpg": ("not_an_image", "not an image"),
    "cut.jpg": ("truncated", "truncated or corrupt"),
    "bomb.png": ("too_many_pixels", "pixels"),
    "blank.png": ("no_face", "no face found"),
    "tiny.jpg": ("face_too_small", "face too small"),
    "again.jpg": ("duplicate", "the same file as obama.jpg"),
    "biden.jpg": ("identity_outlier", "different person"),
    "gone.jpg": ("unreadable", "cannot read"),
}


def test_every_input_gets_its_verdict_and_message(mixed_report):
    verdicts = {v.name: v for v in mixed_report.photos}
    assert set(verdicts) == set(EXPECTED)
    for name, (reason, words) in EXPECTED.items():
        verdict = verdicts[name]
        assert verdict.reason == reason, (name, verdict)
        assert verdict.kept == (reason is None)
        assert words in verdict.message, (name, verdict.message)


def test_face_too_small_names_the_sizes(mixed_report):
    tiny = next(v for v in mixed_report.photos if v.name == "tiny.jpg")
    assert tiny.faces_found == 1
    size = int(tiny.message.split("face too small: ")[1].split(" px")[0])
    assert 30 <= size < 64 and "minimum is 64 px" in tiny.message


def test_rotated_photo_is_cropped_upright(mixed_report):
    rotated = next(v for v in mixed_report.photos if v.name == "rotated.jpg")
    x0, y0, x1, y1 = rotated.face_box
    assert y1 - y0 > x1 - x0  # a face box taller than wide: the face stands upright
    assert rotated.frontal_score is not None and rotated.frontal_score > 0.2
