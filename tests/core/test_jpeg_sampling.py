"""JPEG outputs keep the input's chroma subsampling (issue 21: a 4:4:4 photo re-encoded
at the encoder's default 4:2:0 would lose half its colour resolution)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from denoise_core import codecs, metadata


def colour_photo(h: int = 48, w: int = 64) -> np.ndarray:
    """Smooth colour gradients with fine colour detail: 4:2:0 and 4:4:4 differ on it."""
    y, x = np.mgrid[0:h, 0:w]
    red = 128 + 100 * np.sin(x / 3.0)
    blue = 128 + 100 * np.cos(y / 2.0)
    return np.stack([red, (x * 3) % 256, blue], axis=-1).astype(np.uint8)


def jpeg(image: np.ndarray, sampling: str) -> bytes:
    return codecs.encode_image(image, ".jpg", jpeg_quality=95, jpeg_sampling=sampling)


@pytest.mark.parametrize("sampling", sorted(codecs.JPEG_SAMPLINGS.values()))
def test_every_sampling_is_read_back_from_the_frame_header(sampling):
    assert codecs.jpeg_sampling(jpeg(colour_photo(), sampling)) == sampling


@pytest.mark.parametrize("sampling", ["4:4:4", "4:2:2", "4:2:0"])
def test_jpeg_output_keeps_the_inputs_sampling(sampling):
    source = jpeg(colour_photo(), sampling)
    meta = metadata.capture(source)
    assert meta.jpeg_sampling == sampling
    out = metadata.encode(codecs.decode_image(source), ".jpg", meta)
    assert codecs.jpeg_sampling(out) == sampling


def test_keeping_444_keeps_colour_detail_that_420_loses():
    image = colour_photo()
    meta = metadata.capture(jpeg(image, "4:4:4"))
    kept = codecs.decode_image(metadata.encode(image, ".jpg", meta))
    default = codecs.decode_image(metadata.encode(image, ".jpg", None))
    err = [np.abs(o.astype(float) - image).mean() for o in (kept, default)]
    assert err[0] < 0.7 * err[1], err


def test_inputs_without_a_jpeg_sampling_get_the_encoders_default():
    png = codecs.encode_image(colour_photo(), ".png")
    assert codecs.jpeg_sampling(png) is None
    assert metadata.capture(png).jpeg_sampling is None
    out = metadata.encode(colour_photo(), ".jpg", metadata.capture(png))
    assert codecs.jpeg_sampling(out) == "4:2:0"  # OpenCV's default
    grey = codecs.encode_image(colour_photo()[:, :, :1], ".jpg")
    assert codecs.jpeg_sampling(grey) is None


def test_unknown_sampling_is_refused():
    with pytest.raises(ValueError, match="subsampling"):
        jpeg(colour_photo(), "4:2:1")
    ok, buf = cv2.imencode(".png", colour_photo())
    assert ok and codecs.jpeg_sampling(b"\xff\xd8 not really a jpeg") is None
