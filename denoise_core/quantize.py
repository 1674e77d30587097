"""int8 post-training quantisation of a converted model for OpenVINO (NNCF).

Why: on CPUs with AVX-512 VNNI (or AMX) int8 convolutions run several times faster
than float32: the only way past 1x OpenCV NLM for the default tier on a CPU without
native bf16 (``benchmarks/bench_runtimes.py``). Why opt-in (``--precision int8``,
never ``auto``): it costs PSNR, most on faint noise, where the model's residual is
small next to int8's steps. Measured on an Intel Xeon (Cascade Lake, VNNI) against the
same model in float32 (``unet-v11``): PolyU held-out -0.57 dB, Kodak24 sigma 15 / 25
-0.22 / -0.16 dB; keeping all nine full-resolution convolutions in float32 only
halved that and cost half the speed, so everything is quantised (README).

The recipe: NNCF's ``MIXED`` preset (symmetric int8 weights per channel, asymmetric
uint8 activations), full bias correction, statistics from :data:`CALIBRATION_CROPS`
noisy crops of the photographs bundled with scikit-image (never a benchmark or
validation image) with the training noise mix, so the activation ranges are those of
the inputs the model was trained for.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np

from . import bundled_photos, noise

CALIBRATION_CROPS = 32
CALIBRATION_SIDE = 256
CALIBRATION_SEED = 19
# Bump when the recipe or the calibration data change: part of the cache key.
RECIPE_VERSION = 1


def noisy_photo_crops(
    specs: list[str], count: int, seed: int, multiple: int, side: int = CALIBRATION_SIDE
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (noisy (1, S, S, 3), clean (S, S, 3)) float32 crops of the bundled
    photographs (each at least 300 px a side; S = ``side`` cut to a multiple of
    ``multiple``), crop ``i`` with one draw of noise spec ``specs[i % len(specs)]``."""
    parsed = [noise.parse_noise_spec(s) for s in specs]
    rng = np.random.default_rng(seed)
    side -= side % multiple
    out = []
    for i in range(count):
        img = bundled_photos.photo(bundled_photos.PHOTOS[i % len(bundled_photos.PHOTOS)])
        y = int(rng.integers(0, img.shape[0] - side + 1))
        x = int(rng.integers(0, img.shape[1] - side + 1))
        clean = img[y : y + side, x : x + side].astype(np.float32) / 255.0
        params = noise.sample_noise_params(parsed[i % len(parsed)], rng)
        out.append((noise.apply_noise(clean, params, rng).astype(np.float32)[None], clean))
    return out


def calibration_crops(multiple: int, count: int = CALIBRATION_CROPS) -> list[np.ndarray]:
    """The noisy crops int8 ranges are read from: the training noise mix
    (:data:`noise.DEFAULT_TRAINING_NOISE`) in turn on the bundled photographs."""
    specs = noise.DEFAULT_TRAINING_NOISE.split(";")
    return [n for n, _ in noisy_photo_crops(specs, count, CALIBRATION_SEED, multiple)]


@contextlib.contextmanager
def quiet_nncf():
    """NNCF logs INFO lines and draws progress bars on stdout: a run's output stays ours."""
    import nncf

    nncf.set_log_level(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def nncf_settings() -> dict:
    """The product's NNCF options: symmetric int8 weights and asymmetric activations
    (MIXED), full bias correction; benchmarks that vary the recipe start from these."""
    import nncf

    return {"preset": nncf.QuantizationPreset.MIXED, "fast_bias_correction": False}


def quantize_openvino(xml_in: str, xml_out: str, multiple: int) -> None:
    """The float32 OpenVINO IR ``xml_in`` quantised to int8 into ``xml_out``."""
    import nncf
    import openvino as ov

    crops = calibration_crops(multiple)
    model = ov.Core().read_model(xml_in)
    with quiet_nncf():
        quantized = nncf.quantize(
            model, nncf.Dataset(crops), subset_size=len(crops), **nncf_settings()
        )
    ov.save_model(quantized, xml_out, compress_to_fp16=False)
