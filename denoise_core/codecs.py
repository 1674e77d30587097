"""Decoding and encoding images with clear errors instead of silent garbage.

Arrays in this project are RGB (or grey / RGBA), HxWxC, uint8 or uint16, exactly
as stored: no resizing, no depth conversion. OpenCV decodes (fast, 16-bit aware)
and encodes; fpng writes 8-bit RGB(A) PNGs; pillow-heif (libheif: libde265, x265)
decodes and encodes HEIC/HEIF, 8-bit and 10-bit; OpenCV (libavif) decodes and encodes
AVIF, 8-, 10- and 12-bit in, 8- and 10-bit out; Pillow only reads headers (the size,
before anything is decoded) and the EXIF orientation tag, which OpenCV's
unchanged mode ignores (for AVIF, the container's rotation and mirror, as Pillow reports
them). The input's EXIF, XMP and ICC profile are carried to the
output by :mod:`denoise_core.metadata`, after encoding.

Decoding is where memory starts to grow with the image: a 30000x30000 PNG of one
colour is 2.7 MB on disk and 2.7 GB decoded, and `denoise run` holds about 25 times
the decoded size at its peak (float copies for the model, the output).
:func:`decode_image` therefore reads the header first and refuses images above
``max_megapixels`` (:data:`DEFAULT_MAX_MEGAPIXELS`) without decoding them
(:class:`ImageTooLargeError`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import fpng
import numpy as np

try:
    import pillow_heif
except ImportError:  # a training-only runtime (the lent GPU's image): no HEIC there
    pillow_heif = None

SUPPORTED_DTYPES = (np.uint8, np.uint16)
HEIF_EXTENSIONS = (".heic", ".heif")
AVIF_EXTENSIONS = (".avif",)
# Major brands of HEVC-coded HEIF files (iPhones write ``heic``); AVIF's ``avif`` is not
# among them: this libheif build has no AV1 codec, AVIF goes through OpenCV.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")  # as the major brand, or compatible with mif1/msf1
# HEIC quality (x265 through libheif, 0-100) when none is given. Measured on a 512x384
# smooth synthetic photo, 8-bit, 4:2:0 chroma (x265's default, which phones decode):
# 43.0 / 43.2 / 43.3 dB at quality 80 / 90 / 95 for 37 / 80 / 94 KB; 4:2:0 itself caps
# it (4:4:4 gives 50.6 dB at 90, but not every phone's hardware decoder reads 4:4:4).
DEFAULT_HEIC_QUALITY = 90
# AVIF quality (libavif through OpenCV, 0-100; 100 is lossless 4:4:4, below it 4:2:0)
# and encoder speed (0-10, faster above). Measured on a 512x384 smooth synthetic photo
# with noise of 2 levels, 8-bit, speed 9: 41.1 / 41.2 / 41.4 / 41.8 dB at quality
# 75 / 85 / 90 / 95 for 5 / 12 / 24 / 42 KB, 12 ms CPU at 90; speed 6 made files 5% smaller
# for 7x the time (82 ms).
DEFAULT_AVIF_QUALITY = 90
AVIF_SPEED = 9

# Pillow reads HEIF headers (size, bit depth) through pillow-heif's plugin; pixels are
# decoded by pillow-heif directly (:func:`_decode_heif`).
if pillow_heif is not None:
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
NO_HEIF = "HEIC/HEIF needs pillow-heif, which this Python lacks: pip install 'pillow-heif>=1.8'"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"

# Largest image decode_image accepts by default, in megapixels (width x height / 1e6).
# Why 100: medium-format photos (100 MP) pass, and one `denoise run` actor peaks at
# about 75 bytes per pixel of an 8-bit RGB photo (decoded, float copies for the model,
# the tiled output, rounding, metrics; measured +1.8 GB for 25 MP), so 100 MP needs
# about 8 GB per actor. Larger images are refused from their header before they cost
# any memory; --max-megapixels raises the limit.
DEFAULT_MAX_MEGAPIXELS = 100.0

# A colour JPEG's chroma subsampling, named by its luma component's (horizontal,
# vertical) sampling factors when both chroma components are 1x1 (every camera and phone
# JPEG), and OpenCV's encoder setting for each. Outputs keep the input's subsampling:
# re-encoding a 4:4:4 photo at OpenCV's default 4:2:0 would halve its colour resolution.
JPEG_SAMPLINGS = {
    (1, 1): "4:4:4",
    (2, 1): "4:2:2",
    (2, 2): "4:2:0",
    (1, 2): "4:4:0",
    (4, 1): "4:1:1",
}
_CV2_JPEG_SAMPLING = {
    "4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    "4:4:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440,
    "4:1:1": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411,
}

_ONE_CHANNEL_MODES = ("1", "L", "I", "F")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


class ImageDecodeError(ValueError):
    """An input that is not a usable image; the message is the reason users see."""


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding its pixels."""

    width: int
    height: int
    channels: int  # as decode_image returns them (grey+alpha and palettes expanded)
    bit_depth: int  # 8 or 16

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the array decode_image would return."""
        return self.width * self.height * self.channels * self.bit_depth // 8


def format_megapixels(mp: float) -> str:
    """``900``, ``4``, ``1.5``: megapixels to one decimal, without a trailing ``.0``."""
    return f"{mp:.1f}".removesuffix(".0")


def _format_bytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class ImageTooLargeError(ImageDecodeError):
    """An image whose header says it would decode to more than the allowed megapixels.

    :meth:`describe` words the reason after whatever set the limit (for ``denoise
    run``: ``--max-megapixels 100``).
    """

    def __init__(self, header: ImageHeader, limit: float) -> None:
        self.header = header
        self.limit = limit
        super().__init__(self.describe())

    def describe(self, limit_text: str | None = None) -> str:
        h = self.header
        limit_text = limit_text or f"the limit of {format_megapixels(self.limit)} MP"
        return (
            f"{h.width}x{h.height} = {format_megapixels(h.megapixels)} MP "
            f"({_format_bytes(h.decoded_bytes)} decoded) exceeds {limit_text}"
        )


def _pil_image():
    """Pillow's Image module, its own decompression-bomb guard switched off.

    Why: Pillow never decodes pixels in this project, it only reads headers and EXIF,
    and its fixed guard (a warning above 89 MP, an error above 179 MP) would make those
    reads fail or warn at other sizes than ``max_megapixels``, the one limit, which
    :func:`decode_image` applies from the header before any decoding.
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    return Image


def read_header(data: bytes) -> ImageHeader | None:
    """Size, channels and bit depth from the header (Pillow's lazy open decodes no
    pixels); None when Pillow cannot parse it."""
    try:
        with _pil_image().open(io.BytesIO(data)) as im:
            width, height = im.size
            mode = im.mode
            rawmodes = [str(t[3][0] if isinstance(t[3], tuple) else t[3]) for t in im.tile]
            transparent = "transparency" in im.info
            heif_depth = int(im.info.get("bit_depth") or 8) if im.format == "HEIF" else 8
            if im.format == "AVIF":
                heif_depth = avif_bit_depth(data)
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # shown turned
                    width, height = height, width
    except Exception:
        return None
    if mode in _ONE_CHANNEL_MODES or mode.startswith("I;16"):
        channels = 1
    elif mode in _ALPHA_MODES or (mode == "P" and transparent):
        channels = 4
    else:
        channels = 3
    deep = mode.startswith("I;16") or any(";16" in r for r in rawmodes) or heif_depth > 8
    return ImageHeader(int(width), int(height), channels, 16 if deep else 8)


def check_size(data: bytes, max_megapixels: float | None) -> ImageHeader | None:
    """Raise :class:`ImageTooLargeError` when the header says the image exceeds
    ``max_megapixels`` (None: no limit); returns the header (None if unreadable)."""
    header = read_header(data)
    if header is not None and max_megapixels is not None and header.megapixels > max_megapixels:
        raise ImageTooLargeError(header, max_megapixels)
    return header


def _check_complete(data: bytes) -> None:
    """Catch truncated PNG/JPEG files that decoders would otherwise half-accept."""
    if data.startswith(_PNG_SIGNATURE) and _PNG_IEND not in data[-32:]:
        raise ImageDecodeError("truncated PNG (no IEND chunk)")
    if data.startswith(b"\xff\xd8") and _JPEG_EOI not in data[-16:]:
        raise ImageDecodeError("truncated JPEG (no end-of-image marker)")


def _is_tiff(data: bytes) -> bool:
    return data[:4] in (b"II*\x00", b"MM\x00*")


def is_heif(data: bytes) -> bool:
    """Whether ``data`` is an HEVC-coded HEIF file (``.heic``/``.heif``), by its ftyp box."""
    return data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS and not is_avif(data)


def is_avif(data: bytes) -> bool:
    """Whether ``data`` is an AVIF file: ``avif``/``avis`` as the ftyp box's major brand,
    or among its compatible brands (after a ``mif1``/``msf1`` major brand)."""
    if data[4:8] != b"ftyp":
        return False
    if data[8:12] in _AVIF_BRANDS:
        return True
    size = int.from_bytes(data[:4], "big")
    brands = data[16 : min(size, 256)]  # after the major brand and the minor version
    return any(brands[i : i + 4] in _AVIF_BRANDS for i in range(0, len(brands) - 3, 4))


def avif_bit_depth(data: bytes) -> int:
    """Bits per sample of an AVIF file (8, 10 or 12), from its first AV1 codec
    configuration box (``av1C``: high_bitdepth and twelve_bit flags); 8 if none."""
    at = data.find(b"av1C")
    if at < 0 or at + 7 > len(data):
        return 8
    flags = data[at + 6]
    if not flags & 0x40:  # high_bitdepth
        return 8
    return 12 if flags & 0x20 else 10  # twelve_bit


def _decode_heif(data: bytes) -> np.ndarray:
    """HEIF bytes to RGB(A)/grey uint8 (8-bit files) or uint16 (10/12-bit files).

    libheif applies the container's rotation and mirroring (``irot``/``imir``, which the
    HEIF spec makes the display orientation, in place of EXIF's) while decoding, so the
    pixels come back upright and EXIF orientation is never applied on top. pillow-heif
    gives deep images as ``value << (16 - depth)``; the low bits are filled by bit
    replication (``v * 65535 / 1023`` for 10-bit, 1023 -> 65535), so a 10-bit HEIC uses
    the full 16-bit range as a 16-bit PNG does and its white is 1.0 on the [0, 1] scale.
    """
    if pillow_heif is None:
        raise ImageDecodeError(NO_HEIF)
    try:
        heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=False)
        depth = int(heif.info.get("bit_depth") or 8)
        image = np.asarray(heif)
    except Exception as exc:  # ValueError, EOFError, SyntaxError, RuntimeError from libheif
        raise ImageDecodeError(f"not a decodable HEIF image: {exc}") from exc
    if image.dtype == np.uint16 and 8 < depth < 16:
        image = image | (image >> depth)
    return image


def _full_range(image: np.ndarray, depth: int) -> np.ndarray:
    """``depth``-bit samples (10 or 12) in uint16 as OpenCV decodes AVIF, spread over the
    16-bit range by bit replication (1023 -> 65535), as :func:`_decode_heif` does."""
    if image.dtype != np.uint16 or not 8 < depth < 16:
        return image
    return (image << (16 - depth)) | (image >> (2 * depth - 16))


def jpeg_sampling(data: bytes) -> str | None:
    """Chroma subsampling (``"4:2:0"``, ``"4:4:4"``...) of colour JPEG ``data``, from its
    frame header (no pixels decoded); None for other files, grey JPEGs and layouts
    outside :data:`JPEG_SAMPLINGS`."""
    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        with _pil_image().open(io.BytesIO(data)) as im:
            layers = list(getattr(im, "layer", []))
    except Exception:
        return None
    if len(layers) != 3 or any((h, v) != (1, 1) for _, h, v, _ in layers[1:]):
        return None
    return JPEG_SAMPLINGS.get((layers[0][1], layers[0][2]))


def exif_orientation(data: bytes) -> int:
    """EXIF orientation tag (1 = upright) of JPEG/TIFF/WebP/PNG bytes, 1 when absent; for
    AVIF the orientation its container's transforms (``irot``, ``imir``) make, which
    Pillow reports in the EXIF in place of the file's own tag (the HEIF rule: the
    container's transforms are the display orientation).

    A PNG's EXIF is read from an eXIf chunk before the pixels, where the PNG spec puts
    it (Pillow's ``getexif`` would decode the whole image to look for a later one).
    """
    png = data.startswith(_PNG_SIGNATURE)
    known = png or _is_tiff(data) or data.startswith(b"\xff\xd8") or data[:4] == b"RIFF"
    if not (known or is_avif(data)):
        return 1
    try:
        image_module = _pil_image()
        with image_module.open(io.BytesIO(data)) as im:
            if png:
                exif = image_module.Exif()
                if im.info.get("exif"):
                    exif.load(im.info["exif"])
            else:
                exif = im.getexif()
            return int(exif.get(0x0112, 1) or 1)
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
        7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
        8: lambda a: np.rot90(a, k=1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(image)) if op else image


def decode_image(
    data: bytes,
    *,
    apply_exif: bool = True,
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
) -> np.ndarray:
    """Decode image bytes to an RGB/grey/RGBA array of the stored depth.

    ``apply_exif`` turns the pixels upright by their EXIF orientation (OpenCV's
    unchanged mode ignores it, except for TIFF, whose decoder applies it whatever the
    flags; HEIF and AVIF are always decoded upright by their container's transforms, see
    :func:`_decode_heif` and :func:`exif_orientation`). 10-bit HEIC and 10- or 12-bit
    AVIF come back as uint16 on the full 16-bit range.
    Raises :class:`ImageDecodeError` for empty, truncated, corrupt or unsupported input,
    and its subclass :class:`ImageTooLargeError`, before decoding anything, when the
    header gives more than ``max_megapixels`` (None: no limit; a header Pillow cannot
    read is left to OpenCV, whose own limit is 1 gigapixel).
    Grey images come back as HxWx1 so every array has a channel axis.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    _check_complete(data)
    check_size(data, max_megapixels)
    if is_heif(data):
        image = _decode_heif(data)
    else:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageDecodeError("not a decodable image (corrupt or unsupported format)")
    if image.dtype not in SUPPORTED_DTYPES:
        raise ImageDecodeError(f"unsupported bit depth: {image.dtype} (8- or 16-bit only)")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels not in (1, 3, 4):
        raise ImageDecodeError(f"unsupported channel count: {channels}")
    if is_heif(data):
        return np.ascontiguousarray(image)  # RGB(A) already, turned upright by libheif
    if channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif channels == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    if is_avif(data):  # libavif leaves the container's transforms to us: always applied
        image = _full_range(image, avif_bit_depth(data))
        return apply_orientation(image, exif_orientation(data))
    if apply_exif and not _is_tiff(data):  # OpenCV's TIFF decoder turns TIFFs itself
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


def _encode_heif(image: np.ndarray, quality: int, heif_meta: dict[str, bytes] | None) -> bytes:
    """HEIC bytes at the array's depth: uint8 as 8-bit, uint16 as 10-bit (pillow-heif's
    default for 16-bit data). Grey is stored as RGB (equal channels). ``heif_meta``
    (``exif``, ``xmp``, ``icc_profile``) goes into the file as it is written: libheif
    cannot add metadata to an encoded file, nor can exiv2 write HEIF."""
    if pillow_heif is None:
        raise ValueError(NO_HEIF)
    arr = np.ascontiguousarray(image)
    if arr.shape[2] == 1:
        arr = np.ascontiguousarray(np.repeat(arr, 3, axis=2))
    mode = "RGBA" if arr.shape[2] == 4 else "RGB"
    if arr.dtype == np.uint16:
        mode += ";16"
    out = io.BytesIO()
    kwargs = {k: v for k, v in (heif_meta or {}).items() if v}
    pillow_heif.encode(
        mode, (arr.shape[1], arr.shape[0]), arr.tobytes(), out, quality=quality, **kwargs
    )
    return out.getvalue()


_CV2_METADATA = {
    "exif": cv2.IMAGE_METADATA_EXIF,
    "xmp": cv2.IMAGE_METADATA_XMP,
    "icc_profile": cv2.IMAGE_METADATA_ICCP,
}


def _encode_avif(image: np.ndarray, quality: int, heif_meta: dict[str, bytes] | None) -> bytes:
    """AVIF bytes by OpenCV (libavif): uint8 as 8-bit, uint16 as 10-bit (the top 10
    bits), grey as monochrome, RGBA with alpha; ``heif_meta`` (``exif`` as a TIFF
    structure, ``xmp``, ``icc_profile``, as for HEIC) written into the file with the
    pixels (exiv2 reads AVIF but cannot write it). No rotation box: pixels are upright."""
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    elif arr.ndim == 3:
        arr = arr[:, :, 0]
    depth = 8
    if arr.dtype == np.uint16:
        arr, depth = arr >> 6, 10
    params = [
        cv2.IMWRITE_AVIF_QUALITY,
        quality,
        cv2.IMWRITE_AVIF_DEPTH,
        depth,
        cv2.IMWRITE_AVIF_SPEED,
        AVIF_SPEED,
    ]
    meta = {k: v for k, v in (heif_meta or {}).items() if v and k in _CV2_METADATA}
    if meta:
        ok, buf = cv2.imencodeWithMetadata(
            ".avif",
            np.ascontiguousarray(arr),
            [_CV2_METADATA[k] for k in meta],
            [np.frombuffer(v, np.uint8) for v in meta.values()],
            params,
        )
    else:
        ok, buf = cv2.imencode(".avif", np.ascontiguousarray(arr), params)
    if not ok:
        raise ValueError("OpenCV could not encode .avif")
    return buf.tobytes()


def encode_image(
    image: np.ndarray,
    ext: str = ".png",
    *,
    jpeg_quality: int = 95,
    png_compression: int = 1,
    heic_quality: int = DEFAULT_HEIC_QUALITY,
    heif_meta: dict[str, bytes] | None = None,
    jpeg_sampling: str | None = None,
    avif_quality: int = DEFAULT_AVIF_QUALITY,
) -> bytes:
    """Encode an RGB/grey/RGBA array (uint8 or uint16) losslessly for PNG/TIFF.

    JPEG is written at ``jpeg_quality`` with chroma subsampling ``jpeg_sampling`` (one of
    :data:`JPEG_SAMPLINGS`' names; None: OpenCV's default, 4:2:0), HEIC/HEIF at
    ``heic_quality`` and the array's depth (uint16 as 10-bit), with ``heif_meta`` (see
    :func:`_encode_heif`), AVIF at ``avif_quality`` (uint16 as 10-bit), with the same
    ``heif_meta`` (see :func:`_encode_avif`).

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
    if ext in HEIF_EXTENSIONS:
        return _encode_heif(image, heic_quality, heif_meta)
    if ext in AVIF_EXTENSIONS:
        return _encode_avif(image, avif_quality, heif_meta)
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
        if jpeg_sampling is not None:
            if jpeg_sampling not in _CV2_JPEG_SAMPLING:
                raise ValueError(f"unknown JPEG chroma subsampling {jpeg_sampling!r}")
            params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, _CV2_JPEG_SAMPLING[jpeg_sampling]]
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
