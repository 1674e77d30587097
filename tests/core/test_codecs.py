"""Encoding and decoding: every depth and channel layout round-trips exactly."""

from __future__ import annotations

import subprocess
import sys

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


# --------------------------------------------------------------------------
# HEIC/HEIF (pillow-heif): 8- and 10-bit, upright once, listed
# --------------------------------------------------------------------------


def _photo(height: int, width: int, dtype) -> np.ndarray:
    """A smooth photo-like RGB image (HEIC is lossy: random pixels would not survive)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack(
        [np.sin(x / 17) + np.cos(y / 11), np.sin((x + y) / 23), np.cos(x / 9 - y / 19)], -1
    )
    base = (base - base.min()) / (base.max() - base.min())
    return np.rint(base * np.iinfo(dtype).max).astype(dtype)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    top = float(np.iinfo(a.dtype).max)
    mse = np.mean((a.astype(np.float64) / top - b.astype(np.float64) / top) ** 2)
    return float(10 * np.log10(1 / mse))


_WITHOUT_PILLOW_HEIF = """
import sys
sys.modules["pillow_heif"] = None  # an import of it fails, as on the lent GPU's image
import numpy as np
from denoise_core import codecs
print(codecs.decode_image(codecs.encode_image(np.full((8, 8, 3), 7, np.uint8), ".png")).mean())
for step in (lambda: codecs.decode_image(open(sys.argv[1], "rb").read()),
             lambda: codecs.encode_image(np.zeros((8, 8, 3), np.uint8), ".heic")):
    try:
        step()
    except ValueError as exc:  # ImageDecodeError for the decode
        print(type(exc).__name__, exc)
"""


def test_without_pillow_heif_other_formats_work_and_heic_says_what_to_install(tmp_path):
    # The lent GPU's training image carries no pillow-heif (its wheel would not fit the
    # 64 MiB a device call takes); codecs must still import there and read PNG/JPEG.
    heic = tmp_path / "photo.heic"
    heic.write_bytes(codecs.encode_image(_photo(32, 48, np.uint8), ".heic"))
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PILLOW_HEIF, str(heic)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert out[0] == "7.0"
    assert out[1].startswith("ImageDecodeError HEIC/HEIF needs pillow-heif")
    assert out[2].startswith("ValueError HEIC/HEIF needs pillow-heif")
    assert "pip install" in out[1]


@pytest.mark.parametrize(("dtype", "depth"), [(np.uint8, 8), (np.uint16, 10)])
def test_heic_round_trip_keeps_size_depth_and_pixels(dtype, depth):
    image = _photo(61, 90, dtype)  # odd height: 4:2:0 chroma padding is cropped again
    data = codecs.encode_image(image, ".heic", heic_quality=95)
    assert codecs.is_heif(data) and data[8:12] == (b"heic" if depth == 8 else b"heix")
    import pillow_heif

    assert pillow_heif.open_heif(data, convert_hdr_to_8bit=False).info["bit_depth"] == depth
    header = codecs.read_header(data)
    assert (header.width, header.height, header.channels) == (90, 61, 3)
    assert header.bit_depth == (16 if depth > 8 else 8)
    decoded = codecs.decode_image(data)
    assert decoded.shape == image.shape and decoded.dtype == dtype
    psnr = _psnr(decoded, image)
    print(f"HEIC {depth}-bit quality 95: PSNR {psnr:.2f} dB, {len(data)} bytes")
    assert psnr > 40


def test_ten_bit_heic_uses_the_full_sixteen_bit_range():
    # White (1023 in the file) must read 65535, as in a 16-bit PNG, not 1023 << 6 = 65472.
    white = np.full((16, 16, 3), 65535, np.uint16)
    decoded = codecs.decode_image(codecs.encode_image(white, ".heic", heic_quality=100))
    assert decoded.dtype == np.uint16 and int(decoded.min()) == 65535


def test_grey_and_rgba_write_as_heic():
    grey = _photo(32, 32, np.uint8)[..., :1]
    out = codecs.decode_image(codecs.encode_image(grey, ".heic", heic_quality=95))
    assert out.shape == (32, 32, 3) and _psnr(out[..., :1], grey) > 40
    rgba = np.concatenate([_photo(32, 32, np.uint8), np.full((32, 32, 1), 200, np.uint8)], 2)
    out = codecs.decode_image(codecs.encode_image(rgba, ".heic", heic_quality=95))
    assert out.shape == (32, 32, 4) and np.abs(out[..., 3].astype(int) - 200).max() <= 2


def test_truncated_heic_is_a_decode_error():
    data = codecs.encode_image(_photo(32, 32, np.uint8), ".heic")
    with pytest.raises(codecs.ImageDecodeError, match="HEIF"):
        codecs.decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_heic_is_decoded_upright_once(orientation):
    """An iPhone HEIC stores the rotation as the container's ``irot`` and repeats it in
    EXIF; libheif applies the first, and the second must not turn the pixels again."""
    import io

    import pillow_heif
    from PIL import Image

    stored = _photo(40, 64, np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    pillow_heif.encode("RGB", (64, 40), stored.tobytes(), buf, quality=95, exif=exif.tobytes())
    data = buf.getvalue()
    k = {3: 2, 6: -1, 8: 1}[orientation]  # np.rot90 turns that show it upright
    want = np.rot90(stored, k=k)
    for apply_exif in (True, False):  # the container's transforms apply either way
        decoded = codecs.decode_image(data, apply_exif=apply_exif)
        assert decoded.shape == want.shape
        assert _psnr(decoded, want) > 40


def test_listing_picks_up_heic_and_heif_in_any_case(tmp_path):
    from denoise_core import storage

    for name in ("a.heic", "b.HEIC", "c.heif", "d.HEIF", "e.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.rsplit("/", 1)[-1] for p in storage.walk_images(str(tmp_path))]
    assert found == ["a.heic", "b.HEIC", "c.heif", "d.HEIF"]
    assert storage.is_image_key("IMG_0001.HEIC")


def test_format_keep_is_the_inputs_own_and_heic_is_an_output_format():
    from denoise_core import bulk

    assert bulk.normalize_format("keep") is None and bulk.normalize_format(None) is None
    assert bulk.normalize_format("HEIC") == ".heic"
    assert bulk.output_key("x/IMG_1.HEIC", None) == "x/IMG_1.HEIC"
    assert bulk.output_key("x/a.png", ".heic") == "x/a.heic"


# --------------------------------------------------------------------------
# AVIF (OpenCV's libavif): 8-, 10- and 12-bit in, 8- and 10-bit out, upright once
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "depth"), [(np.uint8, 8), (np.uint16, 10)])
def test_avif_round_trip_keeps_size_depth_and_pixels(dtype, depth):
    image = _photo(61, 90, dtype)  # odd height: 4:2:0 chroma padding is cropped again
    data = codecs.encode_image(image, ".avif", avif_quality=95)
    assert codecs.is_avif(data) and not codecs.is_heif(data) and data[8:12] == b"avif"
    assert codecs.avif_bit_depth(data) == depth
    header = codecs.read_header(data)
    assert (header.width, header.height, header.channels) == (90, 61, 3)
    assert header.bit_depth == (16 if depth > 8 else 8)
    decoded = codecs.decode_image(data)
    assert decoded.shape == image.shape and decoded.dtype == dtype
    psnr = _psnr(decoded, image)
    print(f"AVIF {depth}-bit quality 95: PSNR {psnr:.2f} dB, {len(data)} bytes")
    assert psnr > 40


@pytest.mark.parametrize("depth", [10, 12])
def test_deep_avif_uses_the_full_sixteen_bit_range(depth):
    """White (1023 or 4095 in the file) reads 65535, as a 16-bit PNG's does."""
    import cv2

    white = np.full((16, 16, 3), (1 << depth) - 1, np.uint16)
    params = [cv2.IMWRITE_AVIF_DEPTH, depth, cv2.IMWRITE_AVIF_QUALITY, 100]
    ok, buf = cv2.imencode(".avif", white, params)
    assert ok and codecs.avif_bit_depth(buf.tobytes()) == depth
    decoded = codecs.decode_image(buf.tobytes())
    assert decoded.dtype == np.uint16 and int(decoded.min()) == 65535
    ours = codecs.decode_image(codecs.encode_image(np.full((16, 16, 3), 65535, np.uint16), ".avif"))
    assert int(ours.min()) == 65535


def test_grey_and_rgba_write_as_avif():
    grey = _photo(32, 32, np.uint8)[..., :1]
    out = codecs.decode_image(codecs.encode_image(grey, ".avif", avif_quality=95))
    assert out.shape == (32, 32, 1) and _psnr(out, grey) > 40
    rgba = np.concatenate([_photo(32, 32, np.uint8), np.full((32, 32, 1), 200, np.uint8)], 2)
    out = codecs.decode_image(codecs.encode_image(rgba, ".avif", avif_quality=95))
    assert out.shape == (32, 32, 4) and np.abs(out[..., 3].astype(int) - 200).max() <= 2


@pytest.mark.parametrize("orientation", [2, 3, 5, 6, 7, 8])
def test_avif_is_decoded_as_its_container_shows_it(orientation):
    """Pillow writes an EXIF orientation as the container's ``irot``/``imir`` (the
    display orientation, as in HEIF); libavif leaves them to the reader, and the
    pixels come back as viewers (Pillow's exif_transpose) show them, whatever
    ``apply_exif`` says."""
    import io

    from PIL import Image, ImageOps

    stored = _photo(40, 64, np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "AVIF", quality=95, exif=exif)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert codecs.exif_orientation(data) == orientation
    header = codecs.read_header(data)
    assert (header.height, header.width) == want.shape[:2]
    for apply_exif in (True, False):
        decoded = codecs.decode_image(data, apply_exif=apply_exif)
        assert decoded.shape == want.shape
        assert np.abs(decoded.astype(int) - want).mean() <= 1  # the same decoder


def test_avif_brands_and_truncated_avif():
    data = codecs.encode_image(_photo(32, 32, np.uint8), ".avif")
    # a mif1 major brand with avif among the compatible brands is AVIF, not HEVC HEIF
    mif1 = data[:8] + b"mif1" + data[12:]
    assert b"avif" in mif1[16:32] and codecs.is_avif(mif1) and not codecs.is_heif(mif1)
    heic = codecs.encode_image(_photo(32, 32, np.uint8), ".heic")
    assert codecs.is_heif(heic) and not codecs.is_avif(heic)
    with pytest.raises(codecs.ImageDecodeError):
        codecs.decode_image(data[: len(data) // 2])


def test_listing_and_format_keep_and_avif_output(tmp_path):
    from denoise_core import bulk, storage

    for name in ("a.avif", "b.AVIF", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.rsplit("/", 1)[-1] for p in storage.walk_images(str(tmp_path))]
    assert found == ["a.avif", "b.AVIF"]
    assert bulk.normalize_format("AVIF") == ".avif" and bulk.normalize_format("keep") is None
    assert bulk.output_key("x/IMG_1.AVIF", None) == "x/IMG_1.AVIF"
    assert bulk.output_key("x/a.png", ".avif") == "x/a.avif"
    assert ".avif" in bulk.LOSSY_FORMATS and ".avif" in bulk.DEPTH16_FORMATS
