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
