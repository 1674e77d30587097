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
INFERENCE_PRECISIONS = (AUTO, *PRECISIONS)


def check(precision: str, allowed: tuple[str, ...] = PRECISIONS) -> str:
    """``precision`` if it is one of ``allowed``, else ValueError naming the choices."""
    if precision not in allowed:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(allowed)}")
    return precision
