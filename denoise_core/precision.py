"""The one precision vocabulary: names users type, and the Keras dtype policy of each.

Training (``--precision``), inference (``--precision``, plus ``auto``) and the model
helpers all take these names; only :data:`POLICIES` maps them to Keras. No Keras
import here, so argument parsers can list the choices before anything heavy loads.
"""

from __future__ import annotations

# Keras dtype policy per precision name: variables stay float32 in the mixed ones.
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
PRECISIONS = tuple(POLICIES)  # what training and models accept
AUTO = "auto"  # inference only: bf16 where the CPU has native bf16 and no GPU, else fp32
# Inference only, OpenVINO only: the model quantised after training (denoise_core.quantize).
INT8 = "int8"
INFERENCE_PRECISIONS = (AUTO, *PRECISIONS, INT8)
# Precisions each inference runtime computes in on a CPU (``auto`` resolves to one).
RUNTIME_PRECISIONS = {
    "tensorflow": ("fp32", "bf16", "fp16"),
    "openvino": ("fp32", "bf16", INT8),
    "onnxruntime": ("fp32",),
}


def check(precision: str, allowed: tuple[str, ...] = PRECISIONS) -> str:
    """``precision`` if it is one of ``allowed``, else ValueError naming the choices."""
    if precision not in allowed:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(allowed)}")
    return precision


def runtime_problem(runtime: str, precision: str) -> str | None:
    """Why ``runtime`` cannot compute in ``precision`` (both as typed), else None.
    ``auto`` on either side is resolved later, where the model runs, except that int8
    exists in OpenVINO alone, whatever ``auto`` would pick."""
    if precision == INT8 and runtime != "openvino":
        return f"--precision {INT8} runs in OpenVINO only: add --runtime openvino"
    allowed = RUNTIME_PRECISIONS.get(runtime)
    if precision == AUTO or allowed is None or precision in allowed:
        return None
    return f"--runtime {runtime} computes in {' or '.join(allowed)} only, not {precision}"
