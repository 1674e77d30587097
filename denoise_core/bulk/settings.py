"""The run's settings: one frozen, typed object built once from the arguments.

Every check that needs no storage and no Ray happens in :func:`build_settings`,
so a bad value is one ``error:`` line before anything starts; the object that
comes out is never changed afterwards (paths already absolute, the model chosen,
``--format`` normalised).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from .. import codecs, storage, weights
from ..precision import runtime_problem
from .plan import KEEP_FORMAT, normalize_format

IDENTITY_MODEL = "identity"  # --model identity: the pipeline without a network


def is_null_model(model: str | None) -> bool:
    """``identity`` or ``identity:R`` (R MP/s): no model file, no TensorFlow."""
    return model == IDENTITY_MODEL or (model or "").startswith(IDENTITY_MODEL + ":")


class RunRefused(Exception):
    """A reason not to run (or a failed run): one line for the user and an exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RunSettings:
    """Everything ``denoise run`` was asked to do (field names are the CLI's)."""

    input: str
    output: str
    model: str | None = None
    reference: str | None = None
    layout: str = "auto"
    format: str | None = None  # normalised: ".png", or None to keep each input's format
    jpeg_quality: int = 95
    heic_quality: int = codecs.DEFAULT_HEIC_QUALITY
    strength: float = 1.0
    skip_below: float | None = None
    gpus: float = 0.0
    concurrency: int | None = None
    cpus_per_actor: float = 1.0
    batch_size: int = 4
    tile: int = 1024
    overlap: int = 32
    max_megapixels: float = codecs.DEFAULT_MAX_MEGAPIXELS
    tile_batch: int = 4
    precision: str = "auto"
    io: str = "actor"
    threads: int = 2
    limit: int | None = None
    overwrite: bool = False
    strict: bool = False
    no_report: bool = False
    address: str | None = None
    pipeline: str = "auto"  # auto, fused or split: see choose_pipeline
    data_cpus: int | None = None  # split path: most decode / finish workers at once
    runtime: str = "tensorflow"  # Denoiser(runtime=): tensorflow, openvino, onnxruntime, auto
    ensemble: int = 1  # Denoiser(ensemble=): predictions per tile over flips / rotations
    metrics: str = "exact"  # exact (float64) or fast (float32): denoise_core.fast_metrics

    @classmethod
    def from_namespace(cls, args: Any) -> RunSettings:
        """The fields of ``args`` (an argparse namespace) that this class has, as given."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        if values.get("format") == KEEP_FORMAT:
            values["format"] = None
        return cls(**values)

    def image_step_options(self) -> dict[str, Any]:
        """The per-image keyword arguments of ``ImageSteps`` (and so ``BulkProcessor``):
        one place that hands them on, for the fused and the split path alike."""
        return {
            "overwrite": self.overwrite,
            "max_megapixels": self.max_megapixels,
            "strength": self.strength,
            "skip_below": self.skip_below,
            "jpeg_quality": self.jpeg_quality,
            "heic_quality": self.heic_quality,
            "metrics": self.metrics,
        }


def problem(s: RunSettings) -> str | None:
    """Why these settings cannot run (checked before any storage or Ray), else None."""
    for name in ("tile", "tile_batch", "batch_size"):
        if getattr(s, name) <= 0:
            return f"--{name.replace('_', '-')} must be positive"
    if s.overlap < 0 or s.overlap >= s.tile:
        return "--overlap must be in [0, --tile)"
    if s.gpus < 0 or s.cpus_per_actor < 0:
        return "--gpus and --cpus-per-actor must not be negative"
    if s.concurrency is not None and s.concurrency <= 0:
        return "--concurrency must be positive"
    if s.limit is not None and s.limit < 0:
        return "--limit must not be negative"
    if s.threads < 0:
        return "--threads must not be negative"
    if s.ensemble not in (1, 2, 4, 8):
        return f"--ensemble must be 1, 2, 4 or 8, got {s.ensemble}"
    if not is_null_model(s.model) and (trouble := runtime_problem(s.runtime, s.precision)):
        return trouble
    if s.runtime in ("openvino", "onnxruntime") and not is_null_model(s.model):
        from ..inference import runtime_available  # imports TensorFlow: only when asked

        if not runtime_available(s.runtime, s.precision):
            needs = "NNCF" if runtime_available(s.runtime) else f"--runtime {s.runtime}"
            return f"{needs} is not installed here (pip install 'sidd-denoise[runtimes]')"
    if s.data_cpus is not None and s.data_cpus <= 0:
        return "--data-cpus must be positive"
    if not 0.0 <= s.strength <= 1.0:
        return (
            f"--strength must be in [0, 1] (0: the input unchanged, 1: the model's output), "
            f"got {s.strength:g}"
        )
    for name in ("jpeg_quality", "heic_quality"):
        if not 0 <= getattr(s, name) <= 100:
            return f"--{name.replace('_', '-')} must be in [0, 100], got {getattr(s, name)}"
    if s.skip_below is not None and not 0.0 <= s.skip_below < math.inf:
        return (
            "--skip-below must be a noise sigma >= 0 on the 0-255 scale (e.g. 2 for clean "
            f"photos), got {s.skip_below:g}"
        )
    return None


def place_problem(output: str, places: dict[str, str | None]) -> str | None:
    """Why OUTPUT may not be used, or None. Places are compared resolved (symbolic links,
    ``..``, S3 prefixes): OUTPUT equal to INPUT or the reference, or holding either, would
    put outputs over the user's photos. OUTPUT inside INPUT is fine: listing leaves it out."""
    for name, place in places.items():
        relation = storage.path_relation(output, place) if place else None
        if relation in ("same", "contains"):
            what = "is" if relation == "same" else "contains"
            return (
                f"OUTPUT must differ from {name} and not contain it (inputs are never "
                f"overwritten): {output} {what} {place}"
            )
    return None


def build_settings(args: Any, default_model: str | None = None) -> RunSettings:
    """Checked, resolved settings from parsed arguments; raises :class:`RunRefused`.

    ``default_model`` is the packaged model, used when ``--model`` is not given.
    """
    given = RunSettings.from_namespace(args)
    message = problem(given)
    if message:
        raise RunRefused(message)
    try:
        fmt = normalize_format(given.format)
    except ValueError as exc:
        raise RunRefused(str(exc)) from exc
    inp, out = storage.absolute(given.input), storage.absolute(given.output)
    ref = storage.absolute(given.reference) if given.reference else None
    message = place_problem(out, {"INPUT": inp, "--reference": ref})
    if message:
        raise RunRefused(message)
    try:  # --model default|fast: a packaged tier's file
        model = weights.resolve_model(given.model)
    except weights.NoPackagedModel as exc:
        raise RunRefused(str(exc)) from exc
    model = model if model is not None else default_model
    if model is None:
        raise RunRefused(
            "no packaged model in this installation (denoise_core/weights/default.keras); "
            "pass --model PATH with a .keras file, e.g. RUN/model/model.keras from "
            "`denoise train`"
        )
    if is_null_model(model):
        rate = model.partition(":")[2] or "1"
        try:
            ok = float(rate) > 0
        except ValueError:
            ok = False
        if not ok:
            raise RunRefused(f"--model identity:R needs R > 0 (MP/s), got {rate!r}")
    else:
        model = storage.absolute(model)
    return RunSettings(
        **{
            **{f.name: getattr(given, f.name) for f in fields(RunSettings)},
            "input": inp,
            "output": out,
            "reference": ref,
            "model": model,
            "format": fmt,
        }
    )


def choose_pipeline(s: RunSettings) -> tuple[str, str]:
    """``fused`` or ``split`` for this run, and why (recorded in summary.json).

    Split when the model actors have GPUs: a GPU denoises ~390 MP/s (H200, bf16) while
    one CPU core decodes and encodes JPEG at ~50 MP/s and scores at ~30, so codec and
    metric work inside the actor would cap the GPU at its actor's CPU speed; as CPU
    tasks it scales with the cluster's cores. Fused on CPU-only runs: there the model
    is the slow part (~1-4 MP/s per core), the actor's prefetch threads already overlap
    the codecs with it, and the split path pays for decoded pixels crossing the object
    store twice and a second decode of each input. Measured with the null model on
    the 2-core AMD EPYC here (benchmarks/bench_run.py --ceiling): fused 5.6 / 7.1 MP/s
    against split 3.8 / 5.7 on 1 MP JPEGs (1 / 2 CPUs), 5.7 against 3.2 MP per CPU
    second on 12 MP.
    """
    if s.pipeline != "auto":
        return s.pipeline, f"--pipeline {s.pipeline}"
    if s.gpus > 0:
        return "split", "model actors on GPUs: codecs and metrics in CPU workers keep them fed"
    return "fused", "CPU-only: codecs overlap the model inside the actor, no pixel transfers"
