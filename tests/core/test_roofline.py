"""benchmarks/roofline.py: the int8 kernel it times computes the product it is
credited with, and the ceiling arithmetic (peak / GFLOP per MP, as x NLM)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "roofline.py"
spec = importlib.util.spec_from_file_location("roofline", SCRIPT)
roofline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(roofline)


def test_int8_matmul_is_the_exact_integer_product():
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(3)
    weights = rng.integers(-127, 128, (48, 40), dtype=np.int8)
    a = rng.integers(0, 256, (5, 48), dtype=np.uint8)
    run = roofline.int8_matmul(weights, threads=1)
    got = run(a)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, a.astype(np.int32) @ weights.astype(np.int32))


def test_peaks_take_the_best_kernel_of_each_precision():
    rates = {"matmul fp32": 80.0, "conv fp32": 100.0, "conv bf16": 190.0, "int8 matmul": 370.0}
    assert roofline.peaks(rates) == {"fp32": 100.0, "bf16": 190.0, "int8": 370.0}


def test_ceiling_is_peak_over_cost_and_measured_rows_are_shares_of_it():
    lines = roofline.ceiling_table(
        {"bf16": 200.0},
        {"default": 400.0},
        nlm_mp_per_cpu_s=0.25,
        measured={("default", "bf16"): 0.4},
    )
    cells = [c.strip() for c in lines[-1].strip("|").split("|")]
    # 200 GFLOP/s over 400 GFLOP/MP: 0.5 MP/s, 2x an NLM of 0.25; 0.4 measured is 80% of it
    assert cells == ["default", "400.0", "bf16", "200", "0.500", "2.00", "1.60", "80%"]
