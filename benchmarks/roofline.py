"""The ceiling a model's cost sets on this CPU: how many MP per CPU-second a model of
G GFLOP per megapixel could reach at best, as a ratio to OpenCV NLM.

A speed target such as "the default model at 4x NLM" is only reachable where the
CPU's arithmetic allows it. This measures the arithmetic throughput the libraries
the runtimes use actually get here, per CPU-second of this process:

- ``matmul``: a 2048² x 2048² matrix product in TensorFlow (oneDNN), fp32 and bf16;
- ``conv``: one 3x3 convolution, 64 -> 64 channels on a 256² map (the shape of a
  U-Net's full-resolution stage) in TensorFlow, fp32 and bf16;
- ``int8 matmul``: ONNX Runtime's ``MatMulInteger`` (uint8 x int8 -> int32, the
  kernel its int8 models run), 2048², when onnxruntime and onnx are installed.

The best of each precision is its peak; ``ceiling = peak / (GFLOP per MP)``. A
measured row's share of its ceiling says how much a better runtime could still
win; a target above the ceiling needs a cheaper model or other hardware (AMX,
a GPU), not a runtime. Used by ``bench_runtimes.py`` (its last table; alone with
``--roofline-only``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MATMUL_SIDE = 2048
CONV_SHAPE = (1, 256, 256, 64)  # NHWC input of the 3x3, 64 -> 64 convolution
CONV_FILTERS = 64


def _tensorflow_kernels(precision: str) -> dict[str, tuple[Callable[[], object], float]]:
    import tensorflow as tf

    dtype = tf.bfloat16 if precision == "bf16" else tf.float32
    rng = np.random.default_rng(0)
    n = MATMUL_SIDE
    a = tf.constant(rng.standard_normal((n, n), dtype=np.float32), dtype=dtype)
    b = tf.constant(rng.standard_normal((n, n), dtype=np.float32), dtype=dtype)
    x = tf.constant(rng.standard_normal(CONV_SHAPE, dtype=np.float32), dtype=dtype)
    w = tf.constant(
        rng.standard_normal((3, 3, CONV_SHAPE[-1], CONV_FILTERS), dtype=np.float32) * 0.05,
        dtype=dtype,
    )
    matmul = tf.function(lambda: tf.matmul(a, b))
    conv = tf.function(lambda: tf.nn.conv2d(x, w, strides=1, padding="SAME"))
    conv_gflop = 2 * 9 * CONV_SHAPE[-1] * CONV_FILTERS * CONV_SHAPE[1] * CONV_SHAPE[2] / 1e9
    return {
        f"matmul {precision}": (lambda: matmul().numpy(), 2 * n**3 / 1e9),
        f"conv {precision}": (lambda: conv().numpy(), conv_gflop),
    }


def int8_matmul(weights: np.ndarray, threads: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """``a -> a @ weights`` (uint8 x int8 -> int32) through ONNX Runtime's ``MatMulInteger``,
    the kernel its int8 models run; None without onnxruntime and onnx."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    rows, cols = weights.shape
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        "int8_matmul",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, ["n", rows])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["n", cols])],
        [helper.make_tensor("b", TensorProto.INT8, [rows, cols], weights.tobytes(), raw=True)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return lambda a: session.run(None, {"a": a})[0]


def _int8_kernel(threads: int) -> dict[str, tuple[Callable[[], object], float]]:
    n = MATMUL_SIDE
    rng = np.random.default_rng(0)
    run = int8_matmul(rng.integers(-127, 128, (n, n), dtype=np.int8), threads)
    if run is None:
        return {}
    a = rng.integers(0, 256, (n, n), dtype=np.uint8)
    return {"int8 matmul": (lambda: run(a), 2 * n**3 / 1e9)}


def kernels(precisions: list[str], threads: int) -> dict[str, tuple[Callable[[], object], float]]:
    """Name -> (call, GFLOP per call) of every kernel measured for ``precisions``
    (``fp32``, ``bf16``, ``int8``)."""
    found: dict[str, tuple[Callable[[], object], float]] = {}
    for precision in precisions:
        if precision == "int8":
            found.update(_int8_kernel(threads))
        else:
            found.update(_tensorflow_kernels(precision))
    return found


def peaks(rates: dict[str, float]) -> dict[str, float]:
    """Best GFLOP per CPU-second per precision from ``{kernel name: GFLOP per CPU-s}``."""
    best: dict[str, float] = {}
    for name, rate in rates.items():
        precision = "int8" if name.startswith("int8") else name.split()[-1]
        best[precision] = max(best.get(precision, 0.0), rate)
    return best


def ceiling_table(
    peak: dict[str, float],
    tiers: dict[str, float],
    nlm_mp_per_cpu_s: float,
    measured: dict[tuple[str, str], float] | None = None,
) -> list[str]:
    """Markdown rows: per tier (name -> GFLOP per MP) and precision, the ceiling in MP per
    CPU-second, as x NLM, and the best measured row of that tier and precision as a
    share of it (``measured``: (tier, precision) -> MP per CPU-second)."""
    lines = [
        "| tier | GFLOP/MP | precision | peak GFLOP per CPU-s | ceiling MP per CPU-s "
        "| ceiling x NLM | best measured x NLM | share of ceiling |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tier, gflop in tiers.items():
        for precision, rate in peak.items():
            ceiling = rate / gflop
            got = (measured or {}).get((tier, precision))
            shown = f"{got / nlm_mp_per_cpu_s:.2f}" if got else "-"
            share = f"{got / ceiling:.0%}" if got else "-"
            lines.append(
                f"| {tier} | {gflop:.1f} | {precision} | {rate:.0f} | {ceiling:.3f} "
                f"| {ceiling / nlm_mp_per_cpu_s:.2f} | {shown} | {share} |"
            )
    return lines
