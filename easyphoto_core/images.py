"""Decoding untrusted photos into RGB arrays, with limits and one clear error per failure.

Every upload goes through `decode_image`: size limit on the bytes, format allow-list, a pixel
limit checked on the header before any pixel is decoded (decompression bombs), EXIF orientation
applied, and every mode (16-bit, CMYK, palette, alpha, grey) turned into 8-bit RGB, with
transparent areas composited on white (the training images' background colour).
No global Pillow setting is changed: other code in the host process shares them.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"})


class ImageDecodeError(ValueError):
    """A photo that cannot be used. `reason` is a stable code for reports and UIs:
    not_an_image, unsupported_format, too_large, too_many_pixels, truncated."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DecodeLimits:
    """Limits on one photo. The pixel limit is checked on the header, before decoding; 40 MP
    covers every phone and most cameras (a 40 MP RGB photo is 120 MB decoded)."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 40_000_000
    formats: frozenset[str] = ALLOWED_FORMATS


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # H x W x 3 uint8, EXIF orientation applied
    format: str  # Pillow's format name, e.g. "JPEG"
    source_mode: str  # Pillow's mode before conversion, e.g. "CMYK", "I;16", "RGBA"
    exif_orientation: int  # 1 = upright already; 2-8 = the transform that was applied


def read_limited(path: str | os.PathLike[str], limits: DecodeLimits) -> bytes:
    """The file's bytes, refusing files over `limits.max_bytes` before reading them."""
    file = Path(path)
    size = file.stat().st_size
    if size > limits.max_bytes:
        raise ImageDecodeError(
            "too_large", f"file is {size / 2**20:.1f} MiB, over the {limits.max_bytes / 2**20:.0f}"
            " MiB limit"
        )
    return file.read_bytes()


def decode_image(data: bytes, *, limits: DecodeLimits | None = None) -> DecodedImage:
    """Decode `data` into upright 8-bit RGB; ImageDecodeError with a reason otherwise."""
    limits = limits or DecodeLimits()
    if len(data) > limits.max_bytes:
        raise ImageDecodeError(
            "too_large", f"file is {len(data) / 2**20:.1f} MiB, over the "
            f"{limits.max_bytes / 2**20:.0f} MiB limit"
        )
    image = _open_checked(data, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we checked already
            image.load()
            orientation = _exif_orientation(image)
            source_mode = image.mode
            upright = ImageOps.exif_transpose(image) if orientation != 1 else image
            rgb = to_rgb_array(upright)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageDecodeError(
            "truncated", f"the {image.format} data is truncated or corrupt ({error})"
        ) from None
    return DecodedImage(rgb=rgb, format=str(image.format), source_mode=source_mode,
                        exif_orientation=orientation)


def _exif_orientation(image: Image.Image) -> int:
    """EXIF orientation 1-8 (1 when absent or unreadable: a broken EXIF block is no reason to
    refuse a photo whose pixels decode)."""
    try:
        value = int(image.getexif().get(0x0112, 1) or 1)
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1
    return value if 1 <= value <= 8 else 1


def _open_checked(data: bytes, limits: DecodeLimits) -> Image.Image:
    """Image.open (header only) + format and pixel-count checks."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:  # over twice Pillow's own limit
        raise ImageDecodeError("too_many_pixels", f"too many pixels ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageDecodeError(
            "not_an_image",
            "not an image file of a known format; accepted: "
            f"{', '.join(sorted(limits.formats))} (convert HEIC/RAW photos to JPEG first)",
        ) from None
    if image.format not in limits.formats:
        raise ImageDecodeError(
            "unsupported_format",
            f"{image.format} images are not accepted (use {', '.join(sorted(limits.formats))})",
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageDecodeError(
            "too_many_pixels",
            f"{width}x{height} = {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{limits.max_pixels:,} pixels",
        )
    if width < 1 or height < 1:
        raise ImageDecodeError("not_an_image", f"empty image ({width}x{height})")
    return image


def to_rgb_array(image: Image.Image, *, background: int = 255) -> np.ndarray:
    """Any Pillow mode as H x W x 3 uint8 RGB; transparency composited on `background`."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_grey(image)
    if mode == "P":
        image = image.convert("RGBA")  # the palette may carry transparency
    elif mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        composited = rgba[..., :3] * alpha + background * (1.0 - alpha)
        return np.clip(np.rint(composited), 0, 255).astype(np.uint8)
    # CMYK (Adobe-inverted JPEGs are un-inverted by Pillow's decoder), YCbCr, LAB, L, 1, RGB
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _high_depth_grey(image: Image.Image) -> np.ndarray:
    """16-bit / 32-bit / float grey as 8-bit RGB, by the value range of its type.

    Pillow's own convert("RGB") clips these at 255, which turns a 16-bit photo white.
    """
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        peak = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0
    elif image.mode.startswith("I;16") or values.max(initial=0.0) > 255:
        peak = 65535.0
    else:
        peak = 255.0
    grey = np.clip(np.rint(values / peak * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
