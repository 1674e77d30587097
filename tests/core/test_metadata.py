"""The input's EXIF, XMP and ICC profile reach ``denoise run``'s outputs (no Ray).

Inputs are written by Pillow and outputs read back by Pillow, a reader independent of
exiv2, which writes them; pixels are read by OpenCV.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import asdict
from pathlib import Path

import cv2
import exiv2
import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin, TiffImagePlugin

from denoise_core import bulk, codecs, metadata

DATE = "2021:05:06 07:08:09"
GPS = {1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 36.0)}
STORED = (32, 48)  # height, width as stored; orientation 6 shows it 48 high, 32 wide
XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
    'xmp:Rating="4" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
FORMATS = {".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".webp": "WEBP", ".avif": "AVIF"}
LOSSY = (".jpg", ".avif")


def exif(orientation: int = 6) -> Image.Exif:
    ex = Image.Exif()
    ex[0x0112] = orientation
    ex[0x010F] = "TestCam"
    ex.get_ifd(0x8769).update({0x9003: DATE, 0xA002: STORED[1], 0xA003: STORED[0]})
    ex.get_ifd(0x8825).update(GPS)
    return ex


def photo(seed: int = 0) -> np.ndarray:
    """A stored (not upright) RGB photo whose every orientation looks different."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : STORED[0], 0 : STORED[1]]
    base = np.stack([4 * x + 2 * y, 200 - 3 * y, 5 * x], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def save_with_metadata(pixels: np.ndarray, ext: str) -> bytes:
    """``pixels`` as a file of type ``ext`` with EXIF (orientation 6), XMP and ICC, by Pillow."""
    im, buf, fmt = Image.fromarray(pixels), io.BytesIO(), FORMATS[ext]
    if fmt == "TIFF":  # Pillow writes EXIF sub-IFDs into TIFF only as tiffinfo dicts
        info = TiffImagePlugin.ImageFileDirectory_v2()
        ex = exif()
        for tag, value in ex.items():
            info[tag] = value
        info[0x8769], info[0x8825] = dict(ex.get_ifd(0x8769)), dict(ex.get_ifd(0x8825))
        info[700] = XMP.encode()
        info.tagtype[700] = 1  # BYTE, as TIFF stores XMP
        im.save(buf, fmt, tiffinfo=info, icc_profile=ICC)
    elif fmt == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_itxt("XML:com.adobe.xmp", XMP)
        im.save(buf, fmt, exif=exif(), icc_profile=ICC, pnginfo=text)
    else:  # Pillow's AVIF writer turns EXIF orientation 6 into the container's irot
        extra = {"lossless": True} if fmt == "WEBP" else {"quality": 95}
        im.save(buf, fmt, exif=exif(), icc_profile=ICC, xmp=XMP.encode(), **extra)
    return buf.getvalue()


def pillow_xmp(im: Image.Image) -> str:
    raw = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp") or b""
    return raw.decode() if isinstance(raw, bytes) else raw


def upright(pixels: np.ndarray) -> np.ndarray:
    """What orientation 6 shows: the stored pixels turned 90 degrees clockwise."""
    return np.ascontiguousarray(np.rot90(pixels, k=-1))


def identity(x: np.ndarray) -> np.ndarray:
    return x


def process(src: Path, out: Path) -> dict[str, dict]:
    plan = bulk.plan_run(str(src), str(out), layout="none")
    proc = bulk.BulkProcessor(identity, str(out), threads=2)
    try:
        return {r["key"]: r for r in proc.process([asdict(it) for it in plan.items])}
    finally:
        proc.close()


def round_trip_table(src: Path, out: Path) -> dict[str, dict[str, bool]]:
    """Per format: which of capture date, GPS, camera, ICC, XMP, upright survived."""
    results = process(src, out)
    table = {}
    for ext in FORMATS:
        key = f"photo{ext}"
        assert results[key]["error"] == "", results[key]["error"]
        data = (out / key).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            ex, xmp = im.getexif(), pillow_xmp(im)
            icc = im.info.get("icc_profile")
        pixels = codecs.decode_image(data, apply_exif=False)
        want = upright(photo())
        tolerance = 6 if ext in LOSSY else 0  # JPEG, AVIF re-encoded; the others exactly
        table[ext] = {
            "date": ex.get_ifd(0x8769).get(0x9003) == DATE,
            "gps": dict(ex.get_ifd(0x8825)) == GPS,
            "camera": ex.get(0x010F) == "TestCam",
            "icc": icc == ICC,
            "xmp": re.search(r"Rating\W+4", xmp) is not None,
            "orientation 1": ex.get(0x0112) == 1 and re.search(r"Orientation\W+1\W", xmp),
            "dimensions": ex.get_ifd(0x8769).get(0xA002) == STORED[0],
            "upright": pixels.shape == want.shape
            and np.abs(pixels.astype(int) - want).mean() <= tolerance,
        }
    return table


def test_exif_xmp_icc_kept_and_orientation_reset_for_each_format(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for ext in FORMATS:
        (src / f"photo{ext}").write_bytes(save_with_metadata(photo(), ext))
    table = round_trip_table(src, tmp_path / "out")
    for ext, row in table.items():  # the round-trip table, for the record (pytest -s)
        print(ext, " ".join(f"{name}={'kept' if ok else 'LOST'}" for name, ok in row.items()))
    failed = {ext: [k for k, ok in row.items() if not ok] for ext, row in table.items()}
    assert not any(failed.values()), failed


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_sixteen_bit_outputs_keep_metadata_and_pixels(ext):
    """exiv2 writes into OpenCV's 16-bit PNG and TIFF, which Pillow could not encode."""
    source = save_with_metadata(photo(), ".jpg")
    meta = metadata.capture(source, upright_size=(STORED[0], STORED[1]))
    deep = (upright(photo()).astype(np.uint16) * 257 + 7).astype(np.uint16)
    plain = codecs.encode_image(deep, ext)
    data = metadata.embed(plain, ext, meta)
    np.testing.assert_array_equal(codecs.decode_image(data), deep)
    with Image.open(io.BytesIO(data)) as im:
        ex = im.getexif()
        assert ex.get(0x0112) == 1 and ex.get_ifd(0x8769).get(0x9003) == DATE
        assert dict(ex.get_ifd(0x8825)) == GPS and im.info.get("icc_profile") == ICC
        assert "Rating" in pillow_xmp(im)


@pytest.mark.skipif(not hasattr(cv2, "imdecodeWithMetadata"), reason="OpenCV before 4.12")
def test_png_icc_profile_is_one_libpng_accepts():
    """Our iCCP chunk has a profile name (exiv2's own has none: libpng drops it)."""
    meta = metadata.capture(save_with_metadata(photo(), ".png"))
    data = metadata.embed(codecs.encode_image(photo(), ".png"), ".png", meta)
    pixels, types, chunks = cv2.imdecodeWithMetadata(
        np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED
    )
    assert pixels is not None
    found = {int(t): bytes(np.asarray(c).ravel()) for t, c in zip(types.ravel(), chunks)}
    assert found.get(cv2.IMAGE_METADATA_ICCP) == ICC
    start = data.index(b"iCCP") + 4
    assert data[start : start + 13] == b"ICC Profile\x00\x00"
    assert data.index(b"iCCP") < data.index(b"IDAT")


def test_inputs_without_metadata_are_encoded_as_before():
    pixels = photo()
    for ext in (".png", ".jpg", ".tif", ".webp"):
        plain = codecs.encode_image(pixels, ext)
        meta = metadata.capture(plain)
        assert meta.kinds == (), (ext, meta.kinds)
        assert metadata.embed(plain, ext, meta) is plain


def test_upright_drops_the_thumbnail_and_unreadable_metadata_is_left_out():
    image = exiv2.ImageFactory.open(save_with_metadata(photo(), ".jpg"))
    image.readMetadata()
    thumb = codecs.encode_image(photo()[:8, :12], ".jpg")
    exiv2.ExifThumb(image.exifData()).setJpegThumbnail(thumb)
    image.writeMetadata()
    with image.io().mmap() as view:
        data = bytes(view)
    assert len(exiv2.ExifThumbC(metadata.capture(data).exif).copy().data()) > 0
    turned = metadata.capture(data, upright_size=(STORED[0], STORED[1]))
    assert len(exiv2.ExifThumbC(turned.exif).copy().data()) == 0
    assert turned.exif["Exif.Image.Orientation"].toInt64() == 1
    assert metadata.capture(b"not an image").kinds == ()


def test_png_exif_orientation_is_applied_when_decoding():
    data = save_with_metadata(photo(), ".png")
    assert codecs.exif_orientation(data) == 6
    np.testing.assert_array_equal(codecs.decode_image(data), upright(photo()))


def _image_data(data: bytes, ext: str) -> bytes:
    """The compressed pixels of an encoded file: PNG's IDAT chunks, JPEG's entropy-coded
    scan from its first start-of-scan marker."""
    if ext == ".png":
        return b"".join(
            data[pos + 8 : pos + 8 + length]
            for pos, length in _png_chunks(data)
            if data[pos + 4 : pos + 8] == b"IDAT"
        )
    return data[data.index(b"\xff\xda") :]


def test_metadata_is_spliced_in_without_re_encoding_the_pixels():
    """Why metadata costs little next to encoding: the encoded pixels are carried over
    byte for byte, only the metadata segments / chunks are added."""
    rng = np.random.default_rng(0)
    pixels = cv2.GaussianBlur(rng.integers(0, 256, (384, 512, 3), np.uint8), (5, 5), 0)
    for ext in (".png", ".jpg"):
        meta = metadata.capture(save_with_metadata(photo(), ".jpg"), upright_size=(32, 48))
        plain = codecs.encode_image(pixels, ext)
        tagged = metadata.embed(plain, ext, meta)
        assert len(tagged) > len(plain)
        assert _image_data(tagged, ext) == _image_data(plain, ext)


def _png_chunks(data: bytes) -> list[tuple[int, int]]:
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((pos, length))
        pos += 12 + length
    return chunks


def _png_chunk_types(data: bytes) -> list[bytes]:
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds


def test_png_output_chunks_are_in_spec_order():
    meta = metadata.capture(save_with_metadata(photo(), ".png"))
    data = metadata.embed(codecs.encode_image(photo(), ".png"), ".png", meta)
    kinds = _png_chunk_types(data)
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    for kind in (b"iCCP", b"eXIf"):
        assert kinds.index(kind) < kinds.index(b"IDAT"), kinds
    assert b"iTXt" in kinds
    assert kinds.count(b"IHDR") == kinds.count(b"IDAT") == 1  # nothing of the 1x1 carrier
    assert _png_chunk_types(metadata._CARRIER_PNG) == [b"IHDR", b"fdEC", b"IDAT", b"IEND"]


def test_format_change_carries_metadata_without_the_tiff_layout():
    """A TIFF's EXIF lists its strips and depth; a JPEG made from it must not."""
    meta = metadata.capture(save_with_metadata(photo(), ".tif"), upright_size=STORED[::-1])
    data = metadata.embed(codecs.encode_image(upright(photo()), ".jpg"), ".jpg", meta)
    with Image.open(io.BytesIO(data)) as im:
        ex = im.getexif()
        assert ex.get(0x0112) == 1 and ex.get(0x010F) == "TestCam"
        assert ex.get_ifd(0x8769).get(0x9003) == DATE and dict(ex.get_ifd(0x8825)) == GPS
        assert im.info.get("icc_profile") == ICC and "Rating" in pillow_xmp(im)
        assert not {0x0111, 0x0117, 0x0102, 700, 34675} & set(ex)  # strips, depth, XMP, ICC


# --------------------------------------------------------------------------
# HEIC: captured by exiv2, written through pillow-heif's encoder
# --------------------------------------------------------------------------


def heic_with_metadata(pixels: np.ndarray) -> bytes:
    """An iPhone-like HEIC: rotation 6 in the container (irot) and in EXIF, XMP, ICC."""
    import pillow_heif

    buf = io.BytesIO()
    h, w = pixels.shape[:2]
    mode = "RGB;16" if pixels.dtype == np.uint16 else "RGB"
    pillow_heif.encode(
        mode,
        (w, h),
        pixels.tobytes(),
        buf,
        quality=95,
        exif=exif().tobytes(),
        xmp=XMP.encode(),
        icc_profile=ICC,
    )
    return buf.getvalue()


def assert_kept_and_upright(written: bytes, facts_of, stored: np.ndarray, label: str) -> None:
    """Every metadata fact ``facts_of(written)`` checks is kept, and the pixels were
    turned upright exactly once."""
    facts = facts_of(written)
    print(label, " ".join(f"{k}={'kept' if ok else 'LOST'}" for k, ok in facts.items()))
    assert all(facts.values()), facts
    pixels = codecs.decode_image(written)
    want = upright(stored)
    assert pixels.shape == want.shape  # turned once: not stored, not turned twice
    assert np.abs(pixels.astype(int) - want).mean() < 6


def heic_facts(data: bytes) -> dict[str, bool]:
    """What an HEIC output kept, read back by exiv2 (EXIF, XMP) and pillow-heif (ICC)."""
    import pillow_heif

    image = exiv2.ImageFactory.open(data)
    image.readMetadata()
    ex, xmp = image.exifData(), image.xmpData()

    def value(key: str) -> str:
        pos = ex.findKey(exiv2.ExifKey(key))
        return "" if pos == ex.end() else pos.toString()

    heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=False)
    return {
        "date": value("Exif.Photo.DateTimeOriginal") == DATE,
        "gps": value("Exif.GPSInfo.GPSLatitudeRef") == "N"
        and value("Exif.GPSInfo.GPSLatitude") == "52/1 31/1 25/2",
        "camera": value("Exif.Image.Make") == "TestCam",
        "icc": heif.info.get("icc_profile") == ICC,
        "xmp": xmp.findKey(exiv2.XmpKey("Xmp.xmp.Rating")) != xmp.end(),
        "orientation 1": value("Exif.Image.Orientation") == "1",
    }


@pytest.mark.parametrize("source", [".jpg", ".png", ".heic"])
def test_heic_outputs_keep_exif_xmp_icc_and_are_upright_once(tmp_path, source):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    stored = photo()
    data = heic_with_metadata(stored) if source == ".heic" else save_with_metadata(stored, source)
    (src / f"photo{source}").write_bytes(data)
    plan = bulk.plan_run(str(src), str(out), layout="none", fmt=".heic")
    proc = bulk.BulkProcessor(identity, str(out), threads=0, heic_quality=95)
    try:
        (row,) = proc.process([asdict(it) for it in plan.items])
    finally:
        proc.close()
    assert row["error"] == "" and row["output_key"] == "photo.heic"
    written = (out / "photo.heic").read_bytes()
    assert_kept_and_upright(written, heic_facts, stored, f"{source} -> .heic")


def test_ten_bit_heic_input_stays_ten_bit_with_its_metadata(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    stored = (photo().astype(np.uint16) * 257).astype(np.uint16)
    (src / "IMG_0001.HEIC").write_bytes(heic_with_metadata(stored))
    plan = bulk.plan_run(str(src), str(out), layout="none")  # --format keep
    proc = bulk.BulkProcessor(identity, str(out), threads=0, heic_quality=95)
    try:
        (row,) = proc.process([asdict(it) for it in plan.items])
    finally:
        proc.close()
    assert row["error"] == "" and row["bit_depth"] == 16
    written = (out / "IMG_0001.HEIC").read_bytes()
    import pillow_heif

    assert pillow_heif.open_heif(written, convert_hdr_to_8bit=False).info["bit_depth"] == 10
    assert all(heic_facts(written).values())
    assert codecs.decode_image(written).shape == upright(stored).shape


def test_heif_meta_is_empty_without_metadata():
    assert metadata.heif_meta(None) == {} and metadata.heif_meta(metadata.Metadata()) == {}
    image = photo()
    assert codecs.decode_image(metadata.encode(image, ".heic", None)).shape == image.shape


# --------------------------------------------------------------------------
# AVIF: captured by exiv2 (ISO-BMFF, as HEIC), written through OpenCV's encoder
# --------------------------------------------------------------------------


def avif_facts(data: bytes) -> dict[str, bool]:
    """What an AVIF output kept, read back by exiv2 (EXIF, XMP) and Pillow (ICC, and the
    orientation Pillow shows: the container's, none here)."""
    facts = heic_facts_exiv2(data)
    with Image.open(io.BytesIO(data)) as im:
        facts["icc"] = im.info.get("icc_profile") == ICC
        facts["shown upright"] = im.getexif().get(0x0112, 1) == 1
    return facts


def heic_facts_exiv2(data: bytes) -> dict[str, bool]:
    image = exiv2.ImageFactory.open(data)
    image.readMetadata()
    ex, xmp = image.exifData(), image.xmpData()

    def value(key: str) -> str:
        pos = ex.findKey(exiv2.ExifKey(key))
        return "" if pos == ex.end() else pos.toString()

    return {
        "date": value("Exif.Photo.DateTimeOriginal") == DATE,
        "gps": value("Exif.GPSInfo.GPSLatitudeRef") == "N"
        and value("Exif.GPSInfo.GPSLatitude") == "52/1 31/1 25/2",
        "camera": value("Exif.Image.Make") == "TestCam",
        "xmp": xmp.findKey(exiv2.XmpKey("Xmp.xmp.Rating")) != xmp.end(),
        "orientation 1": value("Exif.Image.Orientation") == "1"
        and xmp["Xmp.tiff.Orientation"].toString() == "1",
        "dimensions": value("Exif.Photo.PixelXDimension") == str(STORED[0]),
    }


def run_one(src: Path, out: Path, fmt: str | None) -> dict:
    plan = bulk.plan_run(str(src), str(out), layout="none", fmt=fmt)
    proc = bulk.BulkProcessor(identity, str(out), threads=0)
    try:
        (row,) = proc.process([asdict(it) for it in plan.items])
    finally:
        proc.close()
    assert row["error"] == "", row["error"]
    return row


@pytest.mark.parametrize("source", [".jpg", ".png", ".heic", ".avif"])
def test_avif_outputs_keep_exif_xmp_icc_and_are_upright_once(tmp_path, source):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    stored = photo()
    data = heic_with_metadata(stored) if source == ".heic" else save_with_metadata(stored, source)
    (src / f"photo{source}").write_bytes(data)
    row = run_one(src, out, ".avif")
    assert row["output_key"] == "photo.avif"
    written = (out / "photo.avif").read_bytes()
    assert codecs.is_avif(written)
    assert_kept_and_upright(written, avif_facts, stored, f"{source} -> .avif")


def test_avif_input_metadata_reaches_a_jpeg_output(tmp_path):
    """exiv2 reads AVIF's EXIF, XMP and ICC: a JPEG made from an AVIF keeps them."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "photo.avif").write_bytes(save_with_metadata(photo(), ".avif"))
    run_one(src, out, ".jpg")
    data = (out / "photo.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        ex = im.getexif()
        assert ex.get(0x0112) == 1 and ex.get(0x010F) == "TestCam"
        assert ex.get_ifd(0x8769).get(0x9003) == DATE and dict(ex.get_ifd(0x8825)) == GPS
        assert im.info.get("icc_profile") == ICC and re.search(r"Rating\W+4", pillow_xmp(im))
    assert codecs.decode_image(data).shape == upright(photo()).shape


def test_ten_bit_avif_input_stays_ten_bit_avif_with_its_metadata(tmp_path):
    """--format keep: a 10-bit AVIF (written here by OpenCV with EXIF, XMP and ICC and no
    rotation) comes out a 10-bit AVIF with the same metadata."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    stored = (upright(photo()).astype(np.uint16) * 257).astype(np.uint16)
    meta = metadata.capture(save_with_metadata(photo(), ".jpg"), upright_size=STORED[::-1])
    (src / "IMG_0001.AVIF").write_bytes(metadata.encode(stored, ".avif", meta))
    row = run_one(src, out, None)  # --format keep
    assert row["bit_depth"] == 16 and row["output_key"] == "IMG_0001.AVIF"
    written = (out / "IMG_0001.AVIF").read_bytes()
    assert codecs.avif_bit_depth(written) == 10
    assert all(avif_facts(written).values()), avif_facts(written)
    decoded = codecs.decode_image(written)
    assert decoded.dtype == np.uint16 and decoded.shape == stored.shape
    assert np.abs(decoded.astype(int) - stored).mean() < 6 * 257


def test_avif_without_metadata_and_with_an_exif_orientation():
    """No metadata: a plain AVIF. libavif writes an EXIF orientation also as the
    container's rotation (irot), so such an AVIF is decoded turned, and its captured
    metadata says orientation 1 for the upright output."""
    image = photo()
    plain = metadata.encode(image, ".avif", None)
    assert metadata.capture(plain).kinds == () and codecs.decode_image(plain).shape == image.shape
    tagged = codecs.encode_image(image, ".avif", heif_meta={"exif": exif(6).tobytes()})
    assert codecs.exif_orientation(tagged) == 6
    assert codecs.decode_image(tagged, apply_exif=False).shape == upright(image).shape
    captured = metadata.capture(tagged)
    assert captured.exif["Exif.Image.Orientation"].toInt64() == 1
    assert captured.exif["Exif.Photo.PixelXDimension"].toInt64() == STORED[0]
