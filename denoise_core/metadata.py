"""A photo's metadata (EXIF, XMP, ICC profile) carried from each input to its output.

Why: a denoised photo library must keep capture dates, GPS, camera and lens, and the
colour profile (a Display-P3 or Adobe RGB photo shown without its profile looks
different). Pixels are encoded as before (OpenCV, fpng); :func:`embed` then writes the
input's metadata into the encoded container with exiv2, the metadata library behind
darktable, digiKam and GIMP, so no pixel is encoded twice and 16-bit PNG and TIFF keep
theirs too (Pillow cannot write 16-bit RGB). JPEG, PNG, TIFF and WebP outputs carry
metadata; BMP has nowhere to put it. HEIC/HEIF and AVIF are the exception: exiv2 reads
them (an iPhone photo's EXIF, XMP and ICC profile are captured like any other; AVIF's
too, through the same ISO-BMFF reader) but cannot write them, and libheif cannot add
metadata to an encoded file, so :func:`encode` hands the metadata to the encoder
(:func:`heif_meta`: raw EXIF and XMP packet, as exiv2 serialises them, and the ICC
profile; pillow-heif's for HEIC, OpenCV's ``imencodeWithMetadata`` for AVIF) and the
file is written with it in one pass. Use :func:`encode` (encode, then embed) for every
format.

Orientation: :func:`denoise_core.codecs.decode_image` turns pixels upright by the
EXIF orientation, so an output whose pixels were turned says orientation 1 (EXIF and
XMP ``tiff:Orientation``), its EXIF pixel dimensions are the output's, and the EXIF
thumbnail, still in the stored orientation, is dropped. An AVIF input is always decoded
as its container's transforms show it, so its metadata always says orientation 1.

A JPEG input's chroma subsampling (4:4:4, 4:2:2, 4:2:0...) travels with its metadata,
so a JPEG output is encoded with the same (:func:`denoise_core.codecs.jpeg_sampling`).

Metadata never costs an image: unreadable metadata is left out (with a warning), and
the output is written without it.
"""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import exiv2
import numpy as np

from .codecs import (
    AVIF_EXTENSIONS,
    DEFAULT_HEIC_QUALITY,
    HEIF_EXTENSIONS,
    encode_image,
    is_avif,
    jpeg_sampling,
    read_header,
)

log = logging.getLogger(__name__)

# Output extensions whose containers hold EXIF, XMP and an ICC profile.
WRITABLE = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", *HEIF_EXTENSIONS, *AVIF_EXTENSIONS)
# ... of which these get it from their encoder (exiv2 cannot write ISO-BMFF files).
_GIVEN_TO_ENCODER = (*HEIF_EXTENSIONS, *AVIF_EXTENSIONS)

# Tags of the first IFD (``Exif.Image``) that describe the input's own pixel layout
# (TIFF baseline and extension tags: size, depth, compression, strips and tiles, chroma
# siting...) or travel on their own (XMP 700, ICC 34675). A TIFF input lists them all
# among its EXIF; carried over they would duplicate the profile or describe the wrong
# pixels, so they are left for the output's encoder to write.
_LAYOUT_TAGS = frozenset(
    [*range(254, 260), *range(262, 267), 273, *range(277, 282), 284, *range(290, 294)]
    + [317, *range(320, 326), 330, 332, *range(338, 342), 347, *range(512, 515)]
    + [*range(529, 533), 700, 34675]
)

# exiv2's XMP toolkit must be initialised once before threads use it (its own rule).
exiv2.XmpParser.initialize()
exiv2.LogMsg.setLevel(exiv2.LogMsg.Level.error)


@dataclass
class Metadata:
    """What one input carries to its output. ``exif`` and ``xmp`` are exiv2 containers
    owned by ``_image``, which reads from ``_data``: both are kept alive with them."""

    exif: Any = None  # exiv2.ExifData, None when the input has no EXIF
    xmp: Any = None  # exiv2.XmpData, None when the input has no XMP
    icc: bytes | None = None
    jpeg_sampling: str | None = None  # a colour JPEG input's chroma subsampling
    _image: Any = None
    _data: bytes = b""

    @property
    def kinds(self) -> tuple[str, ...]:
        """``("exif", "xmp", "icc")``, or the part of it the input has."""
        present = (("exif", self.exif), ("xmp", self.xmp), ("icc", self.icc))
        return tuple(name for name, value in present if value)


def capture(data: bytes, *, upright_size: tuple[int, int] | None = None) -> Metadata:
    """The metadata of encoded image ``data``.

    ``upright_size`` (width, height) says the pixels were turned upright by their EXIF
    orientation and are now that size: the orientation becomes 1 (see the module
    docstring); AVIF's always is. Never raises: metadata exiv2 cannot read is left out.
    """
    sampling = jpeg_sampling(data)
    if upright_size is None and is_avif(data):  # decoded as its container shows it
        header = read_header(data)
        upright_size = (header.width, header.height) if header else None
    try:
        image = exiv2.ImageFactory.open(data)
        image.readMetadata()
        exif, xmp = image.exifData(), image.xmpData()
        layout = [d.key() for d in exif if d.groupName() == "Image" and d.tag() in _LAYOUT_TAGS]
        for key in layout:
            exif.erase(exif.findKey(exiv2.ExifKey(key)))
        icc = bytes(image.iccProfile().data()) if image.iccProfileDefined() else None
        if upright_size is not None:
            _mark_upright(exif, xmp, *upright_size)
    except Exception as exc:  # exiv2.Exiv2Error and anything odd: the pixels still count
        log.warning("metadata left out: %s: %s", type(exc).__name__, exc)
        return Metadata(jpeg_sampling=sampling)
    exif, xmp = (exif if len(exif) else None), (xmp if len(xmp) else None)
    return Metadata(exif, xmp, icc, sampling, image, data)


def _mark_upright(exif, xmp, width: int, height: int) -> None:
    """Orientation 1, the output's pixel dimensions, no thumbnail in the old orientation."""
    if len(exif):
        exif["Exif.Image.Orientation"] = 1
        for key, value in (
            ("Exif.Photo.PixelXDimension", width),
            ("Exif.Photo.PixelYDimension", height),
        ):
            if exif.findKey(exiv2.ExifKey(key)) != exif.end():
                exif[key] = value
        exiv2.ExifThumb(exif).erase()
    if len(xmp) and xmp.findKey(exiv2.XmpKey("Xmp.tiff.Orientation")) != xmp.end():
        xmp["Xmp.tiff.Orientation"] = "1"


def encode(
    image: np.ndarray,
    ext: str,
    meta: Metadata | None,
    *,
    jpeg_quality: int = 95,
    heic_quality: int = DEFAULT_HEIC_QUALITY,
) -> bytes:
    """``image`` encoded as ``ext`` with ``meta`` (None: none) in the file: embedded after
    encoding (:func:`embed`), or for HEIC/HEIF and AVIF given to the encoder
    (:func:`heif_meta`). A JPEG output keeps a JPEG input's chroma subsampling."""
    ext = ext.lower()
    if ext in _GIVEN_TO_ENCODER:
        return encode_image(image, ext, heic_quality=heic_quality, heif_meta=heif_meta(meta))
    sampling = meta.jpeg_sampling if meta is not None else None
    encoded = encode_image(image, ext, jpeg_quality=jpeg_quality, jpeg_sampling=sampling)
    return encoded if meta is None else embed(encoded, ext, meta)


def heif_meta(meta: Metadata | None) -> dict[str, bytes]:
    """The ``exif``, ``xmp`` and ``icc_profile`` of ``meta`` for pillow-heif's and
    :func:`denoise_core.codecs.encode_image`'s AVIF encoder: the
    EXIF as a raw TIFF-structured block and the XMP packet, both serialised by exiv2 into
    the chunks of a 1x1 carrier PNG (eXIf, iTXt), so that they are exactly what a JPEG or
    PNG output of the same input gets. Empty when there is nothing or it cannot be
    serialised (with a warning): the HEIC or AVIF is still written."""
    if meta is None or not meta.kinds:
        return {}
    out = {"icc_profile": meta.icc} if meta.icc else {}
    if meta.exif is None and meta.xmp is None:
        return out
    try:
        carrier = _exiv2_write(_CARRIER_PNG, meta, icc=False)
    except Exception as exc:
        log.warning("metadata not written to HEIC/AVIF output: %s: %s", type(exc).__name__, exc)
        return out
    for kind, start, end in _png_chunks(carrier):
        body = carrier[start + 8 : end - 4]
        if kind == b"eXIf":
            out["exif"] = body
        elif kind == b"iTXt" and body.startswith(_XMP_ITXT_KEYWORD):
            # keyword NUL, compression flag, method, language NUL, translated keyword NUL, text
            compressed = body[len(_XMP_ITXT_KEYWORD)]
            text = body[len(_XMP_ITXT_KEYWORD) + 2 :].split(b"\x00", 2)[-1]
            out["xmp"] = zlib.decompress(text) if compressed else text
    return out


_XMP_ITXT_KEYWORD = b"XML:com.adobe.xmp\x00"


def embed(encoded: bytes, ext: str, meta: Metadata) -> bytes:
    """``encoded`` (an image file of type ``ext``) with ``meta`` written into it; the same
    bytes when there is nothing to write or ``ext`` cannot hold it (HEIC/HEIF, AVIF: see
    :func:`encode`)."""
    ext = ext.lower()
    if not meta.kinds or ext not in WRITABLE or ext in _GIVEN_TO_ENCODER:
        return encoded
    try:
        return _png_with(encoded, meta) if ext == ".png" else _exiv2_write(encoded, meta)
    except Exception as exc:  # a write exiv2 refuses: the output goes out without it
        log.warning("metadata not written to %s output: %s: %s", ext, type(exc).__name__, exc)
        return encoded


def _exiv2_write(encoded: bytes, meta: Metadata, *, icc: bool = True) -> bytes:
    image = exiv2.ImageFactory.open(encoded)
    if meta.exif is not None:
        image.setExifData(meta.exif)
    if meta.xmp is not None:
        image.setXmpData(meta.xmp)
    if icc and meta.icc:
        image.setIccProfile(exiv2.DataBuf(meta.icc))
    image.writeMetadata()
    with image.io().mmap() as view:
        return bytes(view)


# A 1x1 PNG: exiv2 writes EXIF and XMP chunks into it, which are then moved into the
# real output, so that their cost does not grow with the image (exiv2 on the output
# itself copies it twice: +35 ms on a 12 MP PNG that fpng wrote in 57 ms).
_CARRIER_PNG = encode_image(np.zeros((1, 1, 3), np.uint8), ".png")


def _png_chunks(png: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of each chunk of ``png``."""
    pos, chunks = 8, []
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        chunks.append((png[pos + 4 : pos + 8], pos, pos + 12 + length))
        pos += 12 + length
    return chunks


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with(png: bytes, meta: Metadata) -> bytes:
    """``png`` with iCCP, eXIf and XMP iTXt chunks after IHDR. The ICC profile is written
    here and not by exiv2, which gives the chunk an empty profile name that libpng (and so
    browsers) reject as a bad keyword."""
    added = []
    if meta.icc:
        added.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta.icc)))
    if meta.exif is not None or meta.xmp is not None:
        carrier = _exiv2_write(_CARRIER_PNG, meta, icc=False)
        own = {kind for kind, _, _ in _png_chunks(_CARRIER_PNG)}  # IHDR, IDAT, IEND, fpng's
        added += [carrier[a:b] for kind, a, b in _png_chunks(carrier) if kind not in own]
    ihdr_end = 8 + 8 + 13 + 4  # signature, then IHDR (always first, always 13 bytes)
    return b"".join([png[:ihdr_end], *added, png[ihdr_end:]])
