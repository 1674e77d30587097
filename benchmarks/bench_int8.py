"""int8 quantisation recipes for one model tier, side by side: PSNR cost and speed.

What `--precision int8` (``denoise_core/quantize.py``) was chosen against. Each recipe
quantises the tier's float32 model and is scored against the float32 model in
OpenVINO on the same images: the PolyU held-out pairs of an ingested set (real noise,
faint: where int8 costs most) and 4 Kodak24 images at sigma 15 and 25; plus MP per
CPU-second on a 1024² tile. Recipes:

- ``product``: what ``denoise run --runtime openvino --precision int8`` runs;
- ``ort-*``: ONNX Runtime's QDQ quantiser (``bench_runtimes.quantize_int8``) on
  CBSD432 crops, the model then read by OpenVINO: ``ort`` (8 crops, 99.99th
  percentile, as in ``bench_runtimes``), ``ort32`` (32 crops), ``ort32-p99999``,
  ``ort32-float-ends`` (first and last two convolutions in float32);
- ``nncf-*``: NNCF on the OpenVINO model with the CBSD432 crops: ``nncf``
  (default preset), ``nncf-mixed`` (the product's settings on other crops),
  ``nncf-mixed-full-res-float`` (every full-resolution convolution of the U-Net in
  float32: the first two and the last seven).

The SIDD sample crops are left out on purpose: nothing is chosen on them.

    python benchmarks/bench_int8.py --tier default --polyu runs/data/polyu
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_int8.py product   # AVX2 kernels
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_runtimes as br  # noqa: E402

# name: bench_runtimes.quantize_int8 keywords (ONNX Runtime QDQ), with the crop count.
ORT_RECIPES = {
    "ort": (8, {}),
    "ort32": (32, {}),
    "ort32-p99999": (32, {"percentile": 99.999}),
    "ort32-float-ends": (32, {"float_first": 1, "float_last": 2}),
}
# name: (NNCF preset, fast bias correction, convolutions kept float at the start, end).
NNCF_RECIPES = {
    "nncf": ("PERFORMANCE", True, 0, 0),
    "nncf-mixed": ("MIXED", False, 0, 0),
    "nncf-mixed-full-res-float": ("MIXED", False, 2, 7),
}
# name: largest PSNR drop (dB) NNCF's accuracy control may leave on faint-noise crops of
# the bundled photos, reverting the most sensitive layers to float32 until it holds.
ACCURACY_RECIPES = {"nncf-mixed-drop-0.1": 0.1, "nncf-mixed-drop-0.2": 0.2}
RECIPES = ("product", *ORT_RECIPES, *NNCF_RECIPES, *ACCURACY_RECIPES)


def nncf_int8(xml: str, crops: list[np.ndarray], out: str, recipe: tuple) -> str:
    """The OpenVINO IR ``xml`` quantised by NNCF with ``recipe`` into ``out``."""
    import nncf
    import openvino as ov

    from denoise_core.quantize import quiet_nncf

    preset, fast_bias, first, last = recipe
    model = ov.Core().read_model(xml)
    convs = [
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Convolution"
    ]
    ignored = convs[:first] + convs[len(convs) - last :]
    with quiet_nncf():
        quantized = nncf.quantize(
            model,
            nncf.Dataset(crops),
            preset=getattr(nncf.QuantizationPreset, preset),
            subset_size=len(crops),
            fast_bias_correction=fast_bias,
            ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None,
        )
    ov.save_model(quantized, out, compress_to_fp16=False)
    return out


def faint_noise_pairs(multiple: int, count: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """(noisy, clean) crops of the bundled photos with faint noise (Gaussian sigma 2-12
    or camera-pipeline noise), where int8 costs most; fixed seed."""
    from denoise_core.quantize import noisy_photo_crops

    return noisy_photo_crops(["gaussian:2-12", "isp"], count, seed=5, multiple=multiple)


def nncf_accuracy_int8(xml: str, calibration, out: str, max_drop: float, multiple: int) -> str:
    """NNCF int8 (the product's settings) with accuracy control on faint-noise pairs."""
    import nncf
    import openvino as ov

    from denoise_core import metrics
    from denoise_core.quantize import nncf_settings, quiet_nncf

    def validate(compiled, items):
        values = [
            metrics.psnr(np.clip(compiled(noisy)[0][0], 0, 1), clean) for noisy, clean in items
        ]
        return float(np.mean(values)), values

    pairs = faint_noise_pairs(multiple)
    with quiet_nncf():
        quantized = nncf.quantize_with_accuracy_control(
            ov.Core().read_model(xml),
            nncf.Dataset(calibration),
            nncf.Dataset(pairs),
            validate,
            max_drop=max_drop,
            subset_size=len(calibration),
            **nncf_settings(),
        )
    ov.save_model(quantized, out, compress_to_fp16=False)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipes", nargs="*", default=list(RECIPES), help=f"of {', '.join(RECIPES)}")
    p.add_argument("--tier", choices=("default", "fast"), default="default")
    p.add_argument("--polyu", default="runs/data/polyu", help="an ingested PolyU set (val split)")
    p.add_argument("--seconds", type=float, default=8.0, help="timing rounds per recipe")
    args = p.parse_args(argv)
    unknown = sorted(set(args.recipes) - set(RECIPES))
    if unknown:
        p.error(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)}")

    from denoise_core import benchmark, metrics, models, weights
    from denoise_core.inference import Denoiser, load_model_any, openvino_file, runtime_threads

    path = weights.packaged_model_path(args.tier)
    model = models.with_precision(load_model_any(path), "fp32")
    multiple = models.model_size_multiple(model)
    kodak = str(br.DATA / "val" / "Kodak24")
    sets = [
        ("PolyU val", benchmark.paired_set(args.polyu, "val")),
        ("Kodak24 σ15 (4)", benchmark.clean_set(kodak, "gaussian:15", limit=4)),
        ("Kodak24 σ25 (4)", benchmark.clean_set(kodak, "gaussian:25", limit=4)),
    ]
    image = br.bench_image(1024)[None]

    def scores(den) -> list[float]:
        return [np.mean([metrics.psnr(den(n), c) for _, n, c, _ in s.images]) for _, s in sets]

    def show(name: str, den, base: list[float]) -> list[float]:
        rate = br.interleaved_rates({0: lambda: den.predict_batch(image)}, 1.0, args.seconds)[0]
        got = scores(den)
        cells = "  ".join(f"{v:6.2f} ({v - b:+.3f})" for v, b in zip(got, base))
        print(f"{name:27s} {rate[1]:8.3f}  {cells}", flush=True)
        return got

    print(f"{args.tier} tier: {path}; CPU {br.cpu_summary()[0]}")
    print(f"{'recipe':27s} MP/cpu-s  " + "  ".join(f"{label:15s}" for label, _ in sets))
    float32 = Denoiser(model, tile=1024, runtime="openvino")
    base = show("float32 (OpenVINO)", float32, scores(float32))
    work = tempfile.mkdtemp(prefix="bench-int8-")
    crops: dict[int, list[np.ndarray]] = {}
    threads = runtime_threads()
    for name in args.recipes:
        start = time.perf_counter()
        if name == "product":
            den = Denoiser(model, tile=1024, runtime="openvino", precision="int8")
        else:
            count, keywords = ORT_RECIPES.get(name, (32, None))
            if count not in crops and name not in ACCURACY_RECIPES:  # once per count
                crops[count] = br.calibration_crops(count, multiple)
            if keywords is not None:
                file = br.quantize_int8(model, crops[count], work, **keywords)
            elif name in ACCURACY_RECIPES:
                from denoise_core.quantize import calibration_crops

                out = os.path.join(work, f"{name}.xml")
                file = nncf_accuracy_int8(
                    openvino_file(model), calibration_crops(multiple), out,
                    ACCURACY_RECIPES[name], multiple,
                )  # fmt: skip
            else:
                out = os.path.join(work, f"{name}.xml")
                file = nncf_int8(openvino_file(model), crops[count], out, NNCF_RECIPES[name])
            den = br.Int8FileDenoiser(file, "openvino", multiple, 1024, threads)
        print(f"  ({name}: quantised and loaded in {time.perf_counter() - start:.0f} s)")
        show(name, den, base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
