"""``denoise export MODEL --format onnx|tflite|saved_model OUT``: the model for other runtimes.

Exports the float32 model (a bf16-trained model is exported in float32) with Keras 3's
own exporter. Every format takes float32 RGB in [0, 1], shape (batch, height, width, 3),
and returns the denoised image in the same shape (not clipped); batch, height and width
are dynamic, and height and width must be multiples of the model's size multiple (8
for the packaged U-Net; `denoise models` lists it): pad (reflect) and crop, as
`denoise run` does.

  onnx         one .onnx file: ONNX Runtime, OpenVINO, TensorRT...
  tflite       one .tflite file: LiteRT (ai-edge-litert) or tf.lite.Interpreter;
               resize the input tensor to the image's shape, then allocate
  saved_model  a SavedModel folder: tf.saved_model.load(OUT).serve(x), TF Serving

OUT is refused when it exists, unless --overwrite (which replaces only OUT itself: a
file, or for saved_model a SavedModel folder), and never when it is the model itself.
Runs locally, without Ray.
"""

from __future__ import annotations

import argparse

from jobs.common import fail, job_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    from denoise_core.export import FORMATS

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a .keras file (local or s3://...) or a packaged tier: default, fast",
    )
    p.add_argument("out", metavar="OUT", help="the file (onnx, tflite) or folder to write")
    p.add_argument(
        "--format",
        required=True,
        metavar="FORMAT",
        help=f"one of: {', '.join(FORMATS)}",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")


def run(args: argparse.Namespace) -> int:
    from denoise_core import export, models, weights

    try:
        args.model = weights.resolve_model(args.model)  # MODEL default|fast: a packaged tier
    except weights.NoPackagedModel as exc:
        return fail(str(exc))
    if args.format not in export.FORMATS:
        return fail(f"unknown format {args.format!r}; choose one of {', '.join(export.FORMATS)}")
    try:
        # Check OUT before loading the model: a mistake costs no model load.
        export.check_output(args.out, args.overwrite, args.format, [args.model])
        model = export.load_for_export(args.model)
        out = export.export_model(
            model, args.out, args.format, overwrite=args.overwrite, source=args.model
        )
    except export.ExportError as exc:
        return fail(str(exc))
    multiple = models.model_size_multiple(model)
    print(
        f"wrote {out} ({args.format}, float32; input 'noisy' (batch, H, W, "
        f"{model.input_shape[-1]}) in [0, 1], H and W multiples of {multiple})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("export", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
