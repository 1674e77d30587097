"""Encoding and decoding: every depth and channel layout round-trips exactly."""

from __future__ import annotations

import numpy as np
import pytest

from denoise_core import codecs


@pytest.mark.parametrize(
    ("channels", "dtype"),
    [(3, np.uint8), (4, np.uint8), (1, np.uint8), (3, np.uint16), (1, np.uint16)],
)
def test_png_round_trip_is_lossless_at_every_depth_and_layout(channels, dtype):
    rng = np.random.default_rng(channels)
    top = np.iinfo(dtype).max
    image = rng.integers(0, top, size=(37, 53, channels), endpoint=True).astype(dtype)
    data = codecs.encode_image(image, ".png")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = codecs.decode_image(data)
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, image)


def test_eight_bit_rgb_png_keeps_channel_order():
    # A pure red image must come back red, not blue (fpng takes RGB, OpenCV BGR).
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 255
    decoded = codecs.decode_image(codecs.encode_image(image, ".png"))
    assert decoded[..., 0].min() == 255 and decoded[..., 2].max() == 0


# --------------------------------------------------------------------------
# Header first: size, channels and depth without decoding; the megapixel limit
# --------------------------------------------------------------------------


def _cv2_bytes(image: np.ndarray, ext: str) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, image)  # OpenCV directly: the header is its writer's
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    ("shape", "dtype", "ext", "channels", "depth"),
    [
        ((30, 50, 3), np.uint8, ".png", 3, 8),
        ((30, 50), np.uint8, ".png", 1, 8),
        ((30, 50, 4), np.uint16, ".png", 4, 16),
        ((30, 50), np.uint16, ".tif", 1, 16),
        ((30, 50, 3), np.uint16, ".tif", 3, 16),
        ((30, 50, 3), np.uint8, ".jpg", 3, 8),
        ((30, 50, 3), np.uint8, ".bmp", 3, 8),
        ((30, 50, 4), np.uint8, ".webp", 4, 8),
    ],
)
def test_header_gives_size_channels_and_depth_as_decoded(shape, dtype, ext, channels, depth):
    data = _cv2_bytes(np.zeros(shape, dtype), ext)
    header = codecs.read_header(data)
    assert header == codecs.ImageHeader(width=50, height=30, channels=channels, bit_depth=depth)
    decoded = codecs.decode_image(data)
    assert decoded.shape == (30, 50, channels) and decoded.itemsize * 8 == depth
    assert header.decoded_bytes == decoded.nbytes


def test_grey_alpha_and_palette_headers_count_channels_as_decoded():
    import io

    from PIL import Image

    for mode, channels in (("LA", 4), ("P", 3)):
        buf = io.BytesIO()
        Image.new(mode, (7, 5)).save(buf, "PNG")
        header = codecs.read_header(buf.getvalue())
        assert header is not None and (header.width, header.height) == (7, 5)
        assert header.channels == channels == codecs.decode_image(buf.getvalue()).shape[2]


def test_unreadable_header_is_none_and_decoding_still_explains():
    assert codecs.read_header(b"not an image at all") is None
    with pytest.raises(codecs.ImageDecodeError, match="not a decodable image"):
        codecs.decode_image(b"not an image at all")


def test_images_above_the_limit_are_refused_from_the_header():
    data = _cv2_bytes(np.full((2000, 2000), 77, np.uint8), ".png")  # 4 MP of one grey
    with pytest.raises(codecs.ImageTooLargeError) as info:
        codecs.decode_image(data, max_megapixels=1)
    assert str(info.value) == "2000x2000 = 4 MP (4 MB decoded) exceeds the limit of 1 MP"
    assert info.value.describe("--max-megapixels 1").endswith("exceeds --max-megapixels 1")
    assert isinstance(info.value, codecs.ImageDecodeError)  # ingest records it like others
    assert codecs.decode_image(data, max_megapixels=4).shape == (2000, 2000, 1)  # at the limit
    assert codecs.decode_image(data, max_megapixels=None).shape == (2000, 2000, 1)
    assert codecs.DEFAULT_MAX_MEGAPIXELS == 100


def test_pillow_bomb_guard_does_not_override_the_limit():
    """Pillow's own guard (an error above 179 MP) must not turn the header read of a big
    image, or its EXIF orientation, into a silent failure: the one limit is ours."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    # The header of a 30000x30000 RGB PNG (its pixel data is never reached).
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    assert codecs.read_header(data) == codecs.ImageHeader(30000, 30000, 3, 8)
    with pytest.raises(codecs.ImageTooLargeError, match=r"30000x30000 = 900 MP \(2.7 GB"):
        codecs.decode_image(data)


# --------------------------------------------------------------------------
# EXIF orientation: pixels come out upright once, as Pillow's exif_transpose shows them
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_decodes_upright_once(fmt, orientation):
    """OpenCV turns TIFFs itself and ignores the others; either way the result is
    what viewers show (Pillow's exif_transpose), and 7 (transverse) is not 5."""
    import io

    from PIL import Image, ImageOps

    stored = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    if fmt == "TIFF":  # Pillow writes the TIFF tag itself, not an EXIF block
        extra = {"tiffinfo": {0x0112: orientation}}
    else:
        extra["exif"] = exif
    Image.fromarray(stored).save(buf, fmt, **extra)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert codecs.exif_orientation(data) == orientation
    np.testing.assert_array_equal(codecs.decode_image(data), want)
