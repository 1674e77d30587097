"""The no-reference noise estimate of ``denoise run`` (issue 21): Donoho and Johnstone's
wavelet (HH) estimate measured in the weakest-texture blocks only
(:mod:`denoise_core.noise_estimate`).

Accuracy on real photos with synthetic Gaussian noise of known sigma (0-255 scale, added
in float, not clipped), six ``skimage.data`` photos, measured estimate / true, min-max
over the photos (the old estimator, the median over all HH coefficients, in brackets):

    sigma                 5            10           15           25           50
    192x192 crops     0.98-1.08    0.99-1.04    0.95-1.02    0.99-1.01    0.95-0.98
                     (1.00-1.31)  (1.00-1.10)  (0.99-1.04)  (0.98-1.01)  (1.00-1.01)
    whole photos      1.00-1.03    0.98-1.01    0.98-1.02    0.99-1.02    1.00-1.01
                     (1.00-1.33)  (1.00-1.15)  (1.00-1.09)  (1.00-1.04)  (1.00-1.01)
    JPEG q95 4:2:0    0.68-0.80    0.72-0.74    0.67-0.70    0.64-0.69    0.56-0.66
                     (0.57-1.05)  (0.62-0.84)  (0.59-0.74)  (0.57-0.69)  (0.54-0.65)
    8-bit, clipped    1.01-1.07    0.99-1.04    0.97-1.02    0.96-1.01    0.83-0.96
                     (0.89-1.30)  (0.87-1.10)  (0.86-1.02)  (0.84-1.00)  (0.79-0.95)

The JPEG row is the whole photos, noisy, rounded to 8 bits and saved by Pillow at
quality 95 with 4:2:0 chroma: JPEG removes part of the noise (against the std of
decoded - clean it reads 0.62-1.02) and the chroma subsampling smooths the colour
noise, but the estimate does not collapse as a PCA estimate did (a tenth). The 8-bit
row: noise clipped to 0..255, where dark and bright areas lose noise; blocks touching a
clipped pixel are left out. Clean photos read 0.24-1.36 (whole, 8-bit; the old
estimator 0.27-2.22). On the 192x192 crops the estimate's own spread is about 3% (one
sigma, over noise draws); the texture of ``chelsea`` and ``immunohistochemistry`` adds
up to +5% at sigma 5 (their crops' own fine detail reads 1.5 in the blocks chosen from
the clean crop). Real noise pairs, median estimate / std(noisy - clean): SIDD samples
0.47 (the old estimator 0.51), PolyU 0.08 (0.13): camera processing leaves little
fine-scale noise where the image is flat.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from denoise_core import benchmark, greyscale, noise_estimate

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")
SIGMAS = (5, 10, 15, 25, 50)


def photo(name: str) -> np.ndarray:
    return getattr(skimage.data, name)().astype(np.float32)


def centre_crop(name: str, side: int = 192) -> np.ndarray:
    image = photo(name)
    h, w = image.shape[:2]
    return image[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]


def noise(sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(sigma).normal(0, sigma, shape).astype(np.float32)


def unclipped_estimate(image255: np.ndarray) -> float:
    """The estimate (0-255) of a float image that may leave [0, 255]: mapped affinely
    into [0, 1] first, so that the estimator's clipping removes no noise."""
    return 3 * 255 * noise_estimate.estimate_sigma((image255 / 255 + 1) / 3)


def jpeg_420(image255: np.ndarray, quality: int = 95) -> np.ndarray:
    """8-bit, clipped, JPEG at ``quality`` with 4:2:0 chroma, decoded again."""
    u8 = np.clip(np.rint(image255), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(u8).save(buffer, "JPEG", quality=quality, subsampling=2)
    with Image.open(io.BytesIO(buffer.getvalue())) as im:
        assert im.layer[1][1:3] == (1, 1) and im.layer[0][1:3] == (2, 2)  # 4:2:0
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("name", PHOTOS)
def test_within_10_percent_on_crops_and_whole_photos(name):
    for image in (centre_crop(name), photo(name)):
        ratios = {s: unclipped_estimate(image + noise(s, image.shape)) / s for s in SIGMAS}
        for sigma in SIGMAS:
            assert ratios[sigma] == pytest.approx(1.0, abs=0.10), (image.shape, ratios)


@pytest.mark.parametrize("name", PHOTOS)
def test_jpeg_420_and_clipped_8_bit_photos_do_not_collapse(name):
    image = photo(name)
    for sigma in SIGMAS:
        noisy = image + noise(sigma, image.shape)
        jpeg = 255 * noise_estimate.estimate_sigma(jpeg_420(noisy)) / sigma
        assert 0.5 <= jpeg <= 1.0, (sigma, jpeg)  # measured 0.56-0.80
        u8 = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        clipped = 255 * noise_estimate.estimate_sigma(u8) / sigma
        assert 0.8 <= clipped <= 1.1, (sigma, clipped)  # measured 0.83-1.07


def test_clean_photos_read_low():
    clean = {name: noise_estimate.noise_sigma_255(photo(name).astype(np.uint8)) for name in PHOTOS}
    assert max(clean.values()) < 2.0, clean  # measured 0.24-1.36


def test_selection_bias_constant():
    """Re-derive the constant on pure white Gaussian noise: the mean HH energy of the
    chosen blocks over sigma^2. Choosing by LH and HL energy leaves HH unbiased: 1."""
    sigma = 0.04
    derived = []
    for seed in range(4):
        pure = np.random.default_rng(seed).normal(0.5, sigma, (1024, 1024, 3))
        estimate = noise_estimate.estimate_sigma(pure.astype(np.float32))
        derived.append(estimate**2 * noise_estimate.SELECTION_BIAS / sigma**2)
    assert np.mean(derived) == pytest.approx(noise_estimate.SELECTION_BIAS, abs=0.01), derived
    grey = np.random.default_rng(9).normal(0.5, sigma, (1024, 1024)).astype(np.float32)
    assert noise_estimate.estimate_sigma(grey) == pytest.approx(sigma, rel=0.02)


def test_benchmark_keeps_scikit_image_wavelet_mad_and_greyscale_its_laplacian():
    """The benchmark's NLM and CBM3D take their real-noise strength from the plain wavelet
    MAD, scikit-image's estimate_sigma, as their published numbers did."""
    pytest.importorskip("pywt")  # scikit-image's estimate_sigma needs PyWavelets
    from skimage.restoration import estimate_sigma

    rng = np.random.default_rng(0)
    image = centre_crop("coffee", 96) / 255 + rng.normal(0, 0.05, (96, 96, 3))
    image = np.clip(image, 0, 1)
    ours = noise_estimate.wavelet_mad_sigma(image)
    theirs = estimate_sigma(image, channel_axis=-1, average_sigmas=True)
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert benchmark.estimate_sigma is noise_estimate.wavelet_mad_sigma  # one owner
    assert greyscale.estimate_noise_sigma is noise_estimate.laplacian_sigma


def test_dtypes_channels_and_tiny_images_share_the_0_255_scale():
    rng = np.random.default_rng(1)
    crop = centre_crop("chelsea", 128)
    u8 = np.clip(np.rint(crop + rng.normal(0, 20, crop.shape)), 0, 255).astype(np.uint8)
    sigma = noise_estimate.noise_sigma_255(u8)
    assert sigma == pytest.approx(20, rel=0.1)
    assert noise_estimate.noise_sigma_255(u8.astype(np.uint16) * 257) == pytest.approx(sigma)
    assert noise_estimate.noise_sigma_255(u8 / 255.0) == pytest.approx(sigma, rel=1e-5)
    alpha = np.concatenate([u8, rng.integers(0, 256, (128, 128, 1), dtype=np.uint8)], axis=2)
    assert noise_estimate.noise_sigma_255(alpha) == sigma  # alpha is not looked at
    grey = u8[..., 1]
    assert noise_estimate.noise_sigma_255(grey) == noise_estimate.noise_sigma_255(grey[..., None])
    assert noise_estimate.noise_sigma_255(grey) == pytest.approx(20, rel=0.1)
    assert noise_estimate.noise_sigma_255(np.zeros((1, 5, 3), np.uint8)) == 0.0
    for side in (2, 5, 7, 8, 9, 13):  # under 8x8: the plain wavelet MAD
        small = np.ascontiguousarray(u8[:side, :side])
        assert np.isfinite(noise_estimate.noise_sigma_255(small))


def test_large_images_are_sampled_cheaply():
    """A 12 MP photo (and a 1 MP one) is estimated from 4 crops of 256x256 (0.26 MP):
    the same answer as the whole image, at a fraction of the cost. Speed is measured,
    not asserted: about 3 ms CPU per image whatever its size
    (benchmarks/bench_noise_estimate.py; the median over all HH coefficients with
    PyWavelets took 70-106 ms)."""
    rng = np.random.default_rng(2)
    tile = np.clip(
        np.rint(centre_crop("astronaut", 512) + rng.normal(0, 12, (512, 512, 3))), 0, 255
    ).astype(np.uint8)
    photo12 = np.ascontiguousarray(np.tile(tile, (6, 8, 1))[:3024, :4032])  # 12.2 MP
    photo1 = np.ascontiguousarray(np.tile(tile, (2, 2, 1)))  # 1 MP
    assert len(noise_estimate.sample_crops(photo12, tiles=noise_estimate.ESTIMATE_TILES)) == 4
    for image in (photo12, photo1):
        sigma = noise_estimate.noise_sigma_255(image)
        assert sigma == pytest.approx(noise_estimate.noise_sigma_255(tile), rel=0.05)
