"""Running a denoiser on whole images of any size with bounded memory.

One :class:`Denoiser` per process (or Ray actor): the model is loaded and, for a
runtime other than TensorFlow, converted once; tiles then have one shape per image
size, so TensorFlow traces few graphs (varying shapes retrace, tensorflow#34907) and
memory per call is bounded by the tile batch, not by the image.

Runtimes (``runtime=``): ``tensorflow`` runs the Keras model in a ``tf.function``;
``onnxruntime`` runs the model exported to ONNX (:mod:`denoise_core.export`);
``openvino`` runs it converted by ``openvino.convert_model``. Conversions are made
from the float32 model and cached by the model's content in the user cache folder
(:func:`runtime_cache_dir`), never beside the model. ``auto`` is explained in
:func:`resolve_runtime`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable

import numpy as np

from . import metrics, models, tiling
from .precision import INFERENCE_PRECISIONS as PRECISIONS
from .precision import INT8, RUNTIME_PRECISIONS

RUNTIMES = ("auto", "tensorflow", "openvino", "onnxruntime")
ENSEMBLES = (1, 2, 4, 8)
# The 8 symmetries of the square as (transpose, flip rows, flip columns), applied in
# that order; an ensemble of k uses the first k: 2 adds the mirror image, 4 the
# shape-keeping ones (both mirrors and the half turn), 8 the quarter turns and the
# transposes (the x8 self-ensemble of Timofte et al. 2016 / EDSR).
SYMMETRIES = (
    (False, False, False),
    (False, False, True),
    (False, True, False),
    (False, True, True),
    (True, False, False),
    (True, False, True),
    (True, True, False),
    (True, True, True),
)
CACHE_ENV = "DENOISE_CACHE_DIR"


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), from its flags."""
    try:
        with open(cpuinfo) as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 on a CPU with native bf16 and no GPU (about 2x faster, PSNR within
    0.02 dB of fp32 on Kodak24), else fp32. Resolved where the model runs: nodes differ."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def runtime_available(runtime: str, precision: str = "fp32") -> bool:
    """Whether ``runtime``'s package is installed (TensorFlow always is), and for int8
    the quantiser (NNCF) too."""
    import importlib.util

    if precision == INT8 and importlib.util.find_spec("nncf") is None:
        return False
    if runtime == "onnxruntime":
        return all(importlib.util.find_spec(m) for m in ("onnxruntime", "tf2onnx", "onnx"))
    if runtime == "openvino":
        return importlib.util.find_spec("openvino") is not None
    return runtime == "tensorflow"


def resolve_runtime(runtime: str) -> str:
    """The runtime to use; ``auto`` is the fastest one installed for this CPU.

    Measured in one process (``benchmarks/bench_runtimes.py``, packaged U-Net, 1024²
    tile, batch 1, MP per CPU-second on a shared 2-core AMD EPYC with AVX-512 BF16):
    TensorFlow fp32 0.273, bf16 0.559; OpenVINO fp32 0.268, bf16 0.539; ONNX Runtime
    fp32 0.230; OpenCV NLM 0.570. On a 2-core AMD EPYC with AVX2 only (issue 19)
    OpenVINO ran 1.6x TensorFlow fp32 (0.46 against 0.29 MP/s) and 2.7x TensorFlow's
    emulated bf16. So ``auto`` is TensorFlow where there is a GPU or native bf16
    (AVX-512 BF16 / AMX: as fast, and no conversion), else OpenVINO when installed,
    else TensorFlow; ONNX Runtime was never the fastest and is only used when asked.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime != "auto":
        if not runtime_available(runtime):
            extra = {"onnxruntime": "onnxruntime, onnx, tf2onnx", "openvino": "openvino"}
            raise ValueError(
                f"runtime {runtime!r} is not installed (pip install "
                f"'sidd-denoise[runtimes]', or {extra[runtime]})"
            )
        return runtime
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU") or cpu_has_bf16():
        return "tensorflow"
    return "openvino" if runtime_available("openvino") else "tensorflow"


def runtime_threads() -> int:
    """CPU threads a runtime may use in this process: the Ray actor's CPUs.

    Ray sets ``OMP_NUM_THREADS`` in every worker to the CPUs assigned to its task or
    actor (1 when none were asked for), so actors sharing a node do not
    oversubscribe it; outside Ray it is unset and every CPU this process may run on
    is used.
    """
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def runtime_cache_dir() -> str:
    """Where converted models are cached: ``$DENOISE_CACHE_DIR``, else the user cache
    folder (``$XDG_CACHE_HOME`` or ``~/.cache``)/sidd-denoise/runtimes, else a folder
    in the system temp dir when that is not writable."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "sidd-denoise",
        "runtimes",
    )
    try:
        os.makedirs(root, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    root = os.path.join(tempfile.gettempdir(), f"sidd-denoise-{os.getuid()}", "runtimes")
    os.makedirs(root, exist_ok=True)
    return root


def model_digest(model) -> str:
    """Content hash of a model's architecture and weights: the conversion cache key."""
    h = hashlib.sha256(model.to_json().encode())
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    return h.hexdigest()[:20]


def _cached(key: str, build: Callable[[str], None]) -> str:
    """The cache folder for ``key``, made by ``build(folder)`` once. Built in a staging
    folder and renamed into place, so concurrent actors never see half a conversion."""
    root = runtime_cache_dir()
    final = os.path.join(root, key)
    if os.path.isfile(os.path.join(final, ".complete")):
        return final
    staging = tempfile.mkdtemp(prefix=".staging-", dir=root)
    try:
        build(staging)
        open(os.path.join(staging, ".complete"), "w").close()
        try:
            os.rename(staging, final)
        except OSError:  # another process finished first (or a broken leftover)
            if not os.path.isfile(os.path.join(final, ".complete")):
                shutil.rmtree(final, ignore_errors=True)
                os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _versions(*modules: str) -> str:
    import importlib.metadata

    out = []
    for m in modules:
        try:
            out.append(importlib.metadata.version(m))
        except importlib.metadata.PackageNotFoundError:
            out.append("0")
    return "-".join(out)


def _onnx_file(fp32_model) -> str:
    """The model as ONNX in the cache (converted once per model content and tool versions)."""
    from . import export

    key = f"onnx-{model_digest(fp32_model)}-{_versions('keras', 'tf2onnx', 'onnx')}"
    folder = _cached(
        key, lambda d: export.export_model(fp32_model, os.path.join(d, "model.onnx"), "onnx")
    )
    return os.path.join(folder, "model.onnx")


def openvino_file(fp32_model) -> str:
    """The model as OpenVINO IR in the cache, converted from its SavedModel export."""
    from . import export

    def build(folder: str) -> None:
        import openvino as ov

        saved = export.export_model(fp32_model, os.path.join(folder, "saved_model"), "saved_model")
        with export._quiet_converters():
            ov_model = ov.convert_model(saved)
        # save_model stores weights as f16 by default: keep the float32 weights.
        ov.save_model(ov_model, os.path.join(folder, "model.xml"), compress_to_fp16=False)
        shutil.rmtree(saved)

    key = f"openvino-{model_digest(fp32_model)}-{_versions('keras', 'tensorflow', 'openvino')}"
    return os.path.join(_cached(key, build), "model.xml")


def _openvino_int8_file(fp32_model) -> str:
    """The OpenVINO IR quantised to int8 (:mod:`denoise_core.quantize`) in the cache."""
    from . import quantize

    key = (
        f"openvino-int8-v{quantize.RECIPE_VERSION}-{model_digest(fp32_model)}-"
        f"{_versions('keras', 'tensorflow', 'openvino', 'nncf')}"
    )

    def build(folder: str) -> None:  # the float IR only when the int8 one is not cached
        quantize.quantize_openvino(
            openvino_file(fp32_model),
            os.path.join(folder, "model.xml"),
            models.model_size_multiple(fp32_model),
        )

    return os.path.join(_cached(key, build), "model.xml")


class OnnxRuntimeSession:
    """An ONNX file in ONNX Runtime on the CPU, called on float32 batches:
    ``intra_op_num_threads`` from the actor's CPUs, spinning threads off (between calls
    they would burn the cores the actor's codec threads need)."""

    def __init__(self, path: str, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: batch})[0]


class OpenVinoSession:
    """An OpenVINO IR or ONNX file on the CPU, called on float32 batches, with
    ``INFERENCE_NUM_THREADS`` from the actor's CPUs and the precision as its inference
    hint (bf16 runs natively only with AVX-512 BF16 / AMX; int8 layers of a quantised
    model stay int8 under either)."""

    def __init__(self, path: str, threads: int, precision: str) -> None:
        import openvino as ov

        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        self.compiled = core.compile_model(core.read_model(path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: batch})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)


def _transform(batch: np.ndarray, symmetry: tuple[bool, bool, bool]) -> np.ndarray:
    transpose, flip_rows, flip_cols = symmetry
    if transpose:
        batch = batch.transpose(0, 2, 1, 3)
    if flip_rows:
        batch = batch[:, ::-1]
    if flip_cols:
        batch = batch[:, :, ::-1]
    return np.ascontiguousarray(batch)


def _untransform(batch: np.ndarray, symmetry: tuple[bool, bool, bool]) -> np.ndarray:
    """The exact inverse of :func:`_transform`: the same steps in reverse order."""
    transpose, flip_rows, flip_cols = symmetry
    if flip_cols:
        batch = batch[:, :, ::-1]
    if flip_rows:
        batch = batch[:, ::-1]
    if transpose:
        batch = batch.transpose(0, 2, 1, 3)
    return batch


class Denoiser:
    """A Keras denoiser applied tile by tile to float images in [0, 1].

    ``runtime``: ``tensorflow`` (default), ``openvino``, ``onnxruntime`` or ``auto``
    (:func:`resolve_runtime`); the others run the float32 model converted once at
    load, with their own thread setting (:func:`runtime_threads`, or ``threads``).
    ``precision`` applies to the runtime that runs the model: TensorFlow fp32 / bf16
    / fp16, OpenVINO fp32 / bf16 (its inference precision hint) / int8 (the model
    quantised once, :mod:`denoise_core.quantize`: faster, lower PSNR), ONNX Runtime
    fp32; ``auto`` is bf16 where the CPU computes it natively, else fp32.
    ``ensemble``: 1, 2, 4 or 8 predictions per tile over flips and 90° rotations,
    each transformed back exactly and averaged (k times the model's work).
    ``fixed_shape``: every model call gets exactly ``batch_size`` tiles of ``tile``
    pixels (tiles not fitted to the image, short batches padded with zeros), so one
    compiled graph serves a whole run: what GPU actors want; CPUs gain more from tiles
    fitted to each image (the default).
    """

    def __init__(
        self,
        model,
        tile: int = 512,
        overlap: int = 32,
        batch_size: int = 4,
        precision: str = "fp32",
        fit_tiles: bool = True,
        runtime: str = "tensorflow",
        ensemble: int = 1,
        threads: int | None = None,
        fixed_shape: bool = False,
    ) -> None:
        if ensemble not in ENSEMBLES:
            raise ValueError(
                f"ensemble must be one of {', '.join(map(str, ENSEMBLES))}, got {ensemble!r}"
            )
        self.runtime = resolve_runtime(runtime)
        self.precision = self._runtime_precision(precision)
        self.ensemble = ensemble
        self.threads = threads or runtime_threads()
        self.multiple = models.model_size_multiple(model)
        self.tile = tile
        self.overlap = overlap
        self.batch_size = batch_size
        # Tiles shrunk to each image (tiling.fit_tile): a 1024 px image costs 9 tiles of
        # 368 px instead of 9 of 512 px. Shapes then vary with the image size;
        # reduce_retracing makes TensorFlow fall back to one shape-generic graph.
        self.fit_tiles = fit_tiles and not fixed_shape
        self.fixed_shape = fixed_shape
        if self.runtime == "tensorflow":
            import tensorflow as tf

            model = models.with_precision(model, self.precision)
            self.model = model
            fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
            self._run = lambda batch: np.asarray(fn(batch), dtype=np.float32)
        else:
            self.model = models.with_precision(model, "fp32")
            if self.runtime == "onnxruntime":
                self._run = OnnxRuntimeSession(_onnx_file(self.model), self.threads)
            elif self.precision == INT8:  # what stays float computes in float32
                self._run = OpenVinoSession(_openvino_int8_file(self.model), self.threads, "fp32")
            else:
                path = openvino_file(self.model)
                self._run = OpenVinoSession(path, self.threads, self.precision)

    def _runtime_precision(self, precision: str) -> str:
        if precision == "auto" and self.runtime != "tensorflow":
            return (
                "bf16" if "bf16" in RUNTIME_PRECISIONS[self.runtime] and cpu_has_bf16() else "fp32"
            )
        precision = resolve_precision(precision)
        if precision not in RUNTIME_PRECISIONS[self.runtime]:
            raise ValueError(
                f"runtime {self.runtime} computes in "
                f"{' or '.join(RUNTIME_PRECISIONS[self.runtime])} only, not {precision}"
            )
        return precision

    @classmethod
    def from_path(cls, path: str, **kwargs) -> Denoiser:
        """Load a ``.keras`` file (local or any storage URI) with ``safe_mode=True``;
        ``kwargs`` (``runtime``, ``ensemble``, ``precision``, tiling) go to the constructor."""
        return cls(load_model_any(path), **kwargs)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """The model on a (N, H, W, C) float32 batch (H, W multiples of ``self.multiple``),
        averaged over ``self.ensemble`` symmetries; not clipped."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        n = batch.shape[0]
        if self.fixed_shape and n < self.batch_size:
            padded = np.zeros((self.batch_size, *batch.shape[1:]), dtype=np.float32)
            padded[:n] = batch
            return self._predict(padded)[:n]
        return self._predict(batch)

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        if self.ensemble == 1:
            return np.asarray(self._run(batch), dtype=np.float32)
        total: np.ndarray | None = None
        for symmetry in SYMMETRIES[: self.ensemble]:
            pred = _untransform(np.asarray(self._run(_transform(batch, symmetry))), symmetry)
            if total is None:
                total = np.array(pred, dtype=np.float32)  # a copy: runtimes reuse buffers
            else:
                total += pred
        assert total is not None
        total /= self.ensemble
        return total

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Denoise an HxWx3 float image in [0, 1]; returns float32 clipped to [0, 1]."""
        out = tiling.denoise_tiled(
            self.predict_batch,
            image,
            tile=self.tile,
            overlap=self.overlap,
            multiple=self.multiple,
            batch_size=self.batch_size,
            fit=self.fit_tiles,
        )
        return np.clip(out, 0.0, 1.0, out=out if out.flags.writeable else None)


def load_model_any(path: str):
    """``keras.models.load_model(safe_mode=True)`` for a local path or a storage URI."""
    from . import storage

    if not storage.is_remote(path):
        return models.load_model(path)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, os.path.basename(path.rstrip("/")) or "model.keras")
        with open(local, "wb") as f:
            f.write(storage.read_bytes(path))
        return models.load_model(local)


def evaluate_sets(denoiser: Denoiser, sets: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict:
    """:func:`evaluate_pairs` over every image of every named set, so one number can choose a
    checkpoint, and, with several sets, each set's PSNR alone as ``val_psnr/NAME``: a gain on
    one kind of noise bought by a loss on another shows there."""
    per_set = {name: evaluate_pairs(denoiser, pairs) for name, pairs in sets.items()}
    count = sum(r["val_images"] for r in per_set.values())
    out = {
        k: sum(r[k] * r["val_images"] for r in per_set.values()) / count
        for k in ("val_psnr", "val_ssim", "val_noisy_psnr")
    }
    out["val_images"] = count
    if len(per_set) > 1:
        out.update({f"val_psnr/{name}": r["val_psnr"] for name, r in per_set.items()})
    return out


def evaluate_pairs(denoiser: Denoiser, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Mean PSNR/SSIM of the denoised output and of the noisy input over (noisy, clean) pairs."""
    out_psnr, out_ssim, in_psnr = [], [], []
    for noisy, clean in pairs:
        denoised = denoiser(noisy)
        out_psnr.append(metrics.psnr(denoised, clean))
        out_ssim.append(metrics.ssim(denoised, clean))
        in_psnr.append(metrics.psnr(noisy, clean))
    return {
        "val_psnr": float(np.mean(out_psnr)),
        "val_ssim": float(np.mean(out_ssim)),
        "val_noisy_psnr": float(np.mean(in_psnr)),
        "val_images": len(pairs),
    }
