"""Decoding and encoding images with clear errors instead of silent garbage.

Arrays in this project are RGB (or grey / RGBA), HxWxC, uint8 or uint16, exactly
as stored: no resizing, no depth conversion. OpenCV decodes (fast, 16-bit aware)
and encodes; fpng writes 8-bit RGB(A) PNGs; Pillow only reads the EXIF
orientation tag, which OpenCV's unchanged mode ignores.
"""

from __future__ import annotations

import io

import cv2
import fpng
import numpy as np

SUPPORTED_DTYPES = (np.uint8, np.uint16)
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"


class ImageDecodeError(ValueError):
    """An input that is not a usable image; the message is the reason users see."""


def _check_complete(data: bytes) -> None:
    """Catch truncated PNG/JPEG files that decoders would otherwise half-accept."""
    if data.startswith(_PNG_SIGNATURE) and _PNG_IEND not in data[-32:]:
        raise ImageDecodeError("truncated PNG (no IEND chunk)")
    if data.startswith(b"\xff\xd8") and _JPEG_EOI not in data[-16:]:
        raise ImageDecodeError("truncated JPEG (no end-of-image marker)")


def exif_orientation(data: bytes) -> int:
    """EXIF orientation tag (1 = upright) of JPEG/TIFF/WebP bytes, 1 when absent."""
    if not (data.startswith(b"\xff\xd8") or data[:4] in (b"II*\x00", b"MM\x00*", b"RIFF")):
        return 1
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:
        return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip pixels so that EXIF orientation ``orientation`` becomes upright."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: np.rot90(a, k=1)[::-1, :],
        8: lambda a: np.rot90(a, k=1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(image)) if op else image


def decode_image(data: bytes, *, apply_exif: bool = True) -> np.ndarray:
    """Decode image bytes to an RGB/grey/RGBA array of the stored depth.

    Raises :class:`ImageDecodeError` for empty, truncated, corrupt or unsupported input.
    Grey images come back as HxWx1 so every array has a channel axis.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    _check_complete(data)
    buf = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageDecodeError("not a decodable image (corrupt or unsupported format)")
    if image.dtype not in SUPPORTED_DTYPES:
        raise ImageDecodeError(f"unsupported bit depth: {image.dtype} (8- or 16-bit only)")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif channels == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    elif channels != 1:
        raise ImageDecodeError(f"unsupported channel count: {channels}")
    if apply_exif:
        image = apply_orientation(image, exif_orientation(data))
    return image


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Three-channel view for models: grey replicated, or raises for alpha images."""
    channels = image.shape[2]
    if channels == 3:
        return image
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    raise ImageDecodeError(f"unsupported channel count: {channels} (RGB or grey expected)")


def _fpng_can_write(image: np.ndarray) -> bool:
    return image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] in (3, 4)


def encode_image(
    image: np.ndarray, ext: str = ".png", *, jpeg_quality: int = 95, png_compression: int = 1
) -> bytes:
    """Encode an RGB/grey/RGBA array (uint8 or uint16) losslessly for PNG/TIFF.

    Encoding is part of ``denoise run``'s per-image cost, next to a model that
    handles a 512x512 image in about 55 ms on 2 cores. 8-bit RGB and RGBA PNGs go
    through fpng (a standard PNG that every decoder reads): 1.2 ms for a 512x512
    photo against 12 ms for libpng at level 1 Huffman-only, for about 18% more
    bytes. Grey and 16-bit PNGs, which fpng does not write, use libpng at level 1
    with zlib's Huffman-only strategy (photographs gain almost nothing from LZ77
    matches after PNG's row filters: 66% of level 1's default time, +0.5% bytes).
    """
    if image.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"cannot encode dtype {image.dtype}")
    ext = ext.lower()
    if ext == ".png" and _fpng_can_write(image):
        return fpng.from_ndarray(np.ascontiguousarray(image))
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
    elif ext == ".png":
        params = [
            cv2.IMWRITE_PNG_COMPRESSION,
            png_compression,
            cv2.IMWRITE_PNG_STRATEGY,
            cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
        ]
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode {ext}")
    return buf.tobytes()


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB/grey array at its own bit depth."""
    return encode_image(image, ".png")
