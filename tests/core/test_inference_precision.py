"""Inference precision: ``auto`` picks bf16 only where the CPU computes it natively,
and a bf16 Denoiser stays within bf16 rounding of the fp32 one on whole images."""

from __future__ import annotations

import numpy as np
import pytest

from denoise_core.inference import Denoiser, cpu_has_bf16, resolve_precision
from denoise_core.models import build_model

FLAGS = "fpu vme sse sse2 avx2 avx512f"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(FLAGS, False), (FLAGS + " avx512_bf16", True), (FLAGS + " amx_bf16 amx_tile", True)],
)
def test_cpu_has_bf16_reads_the_flags_line(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: X\nflags\t\t: {flags}\n\n")
    assert cpu_has_bf16(str(cpuinfo)) is expected


def test_cpu_has_bf16_without_cpuinfo_is_false(tmp_path):
    assert cpu_has_bf16(str(tmp_path / "missing")) is False


def test_resolve_precision():
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    # No GPU in the test environment: auto follows this machine's CPU flags.
    assert resolve_precision("auto") == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("int8") == "int8"  # OpenVINO only: checked by the Denoiser
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        resolve_precision("int4")


def test_bf16_denoiser_matches_fp32_on_odd_sized_images():
    model = build_model("unet", widths=(8, 16), blocks_per_level=1)
    rng = np.random.default_rng(0)
    image = rng.random((45, 70, 3), dtype=np.float32)
    fp32 = Denoiser(model, tile=32, overlap=8)
    bf16 = Denoiser(model, tile=32, overlap=8, precision="bf16")
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    a, b = fp32(image), bf16(image)
    assert a.shape == b.shape == image.shape and b.dtype == np.float32
    assert 0 < np.abs(a - b).max() < 0.05
