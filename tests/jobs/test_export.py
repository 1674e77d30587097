"""``denoise export``: each format run in its own runtime matches the Keras model.

ONNX in ONNX Runtime, TFLite in LiteRT (``ai-edge-litert``, else ``tf.lite``), the
SavedModel through ``tf.saved_model.load``, all on an odd-sized image padded by the
tiling code's rule (reflect, bottom/right, to the model's size multiple): max abs
difference to the float32 Keras model at most 1e-3 on [0, 1]. Plus the refusals:
a missing model, an existing OUT, an unknown format, OUT that is the model.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from denoise_core import export, models, tiling, weights
from jobs import export as export_job

TOLERANCE = 1e-3


def tiny_model():
    """A 3-level U-Net (size multiple 4) with random weights: fast on 2 cores."""
    return models.build_model("unet", widths=(8, 12, 16), blocks_per_level=1)


def odd_image(h: int = 37, w: int = 51, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


def padded(model, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    canvas, size = tiling.pad_to_multiple(image, models.model_size_multiple(model))
    return np.ascontiguousarray(canvas[None]), size


def run_onnx(path: str, x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == export.INPUT_NAME
    return session.run(None, {export.INPUT_NAME: x})[0]


def tflite_interpreter(path: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(model_path=path)


def run_tflite(path: str, x: np.ndarray) -> np.ndarray:
    interpreter = tflite_interpreter(path)
    inp = interpreter.get_input_details()[0]
    assert list(inp["shape_signature"][1:3]) == [-1, -1], "height and width are dynamic"
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def run_saved_model(path: str, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(path)  # kept alive: serve() refers to its variables
    return loaded.serve(tf.constant(x)).numpy()


RUNNERS = {"onnx": run_onnx, "tflite": run_tflite, "saved_model": run_saved_model}
NAMES = {"onnx": "model.onnx", "tflite": "model.tflite", "saved_model": "saved_model"}


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_export_matches_keras_on_an_odd_sized_image(tmp_path, fmt):
    model = tiny_model()
    x, size = padded(model, odd_image())
    assert x.shape[1:3] != size  # the image really was padded
    out = export.export_model(model, str(tmp_path / NAMES[fmt]), fmt)
    got = tiling.crop_to(RUNNERS[fmt](out, x)[0], size)
    want = tiling.crop_to(model(x, training=False).numpy()[0], size)
    assert got.shape == (*size, 3)
    assert np.abs(got - want).max() <= TOLERANCE
    # Only OUT was written: no staging folder left beside it.
    assert sorted(os.listdir(tmp_path)) == [NAMES[fmt]]


def test_bf16_policy_model_exports_in_float32(tmp_path):
    """A model saved by a bf16 run carries a mixed_bfloat16 policy; the export is float32
    and matches the float32 model, not the bf16 one."""
    fp32 = tiny_model()
    bf16 = models.with_precision(fp32, "bf16")
    assert bf16 is not fp32
    x, size = padded(fp32, odd_image(29, 43, seed=1))
    out = export.export_model(bf16, str(tmp_path / "model.onnx"), "onnx")
    got = run_onnx(out, x)
    want = fp32(x, training=False).numpy()
    assert np.abs(got - want).max() <= TOLERANCE


def test_batches_and_sizes_are_dynamic(tmp_path):
    model = tiny_model()
    out = export.export_model(model, str(tmp_path / "model.onnx"), "onnx")
    for shape in ((1, 16, 24, 3), (3, 40, 20, 3)):
        x = np.random.default_rng(2).random(shape, dtype=np.float32)
        assert np.abs(run_onnx(out, x) - model(x).numpy()).max() <= TOLERANCE


def test_packaged_model_exports_to_onnx_and_tflite(tmp_path):
    """The shipped model (size multiple 8) at a small odd size, in both phone/CPU formats,
    against its float32 version (it is saved with a bf16 policy)."""
    path = weights.default_model_path()
    model = models.load_model(path)
    image = odd_image(45, 61, seed=3)
    x, size = padded(model, image)
    assert x.shape[1:3] == (48, 64)
    want = tiling.crop_to(export.float32_model(model)(x, training=False).numpy()[0], size)
    for fmt in ("onnx", "tflite"):
        out = export.export_model(model, str(tmp_path / NAMES[fmt]), fmt, source=path)
        got = tiling.crop_to(RUNNERS[fmt](out, x)[0], size)
        assert np.abs(got - want).max() <= TOLERANCE, fmt


# --- the command and its refusals -------------------------------------------------------


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.keras"
    tiny_model().save(path)
    return path


def test_cli_writes_onnx(tmp_path, model_file, capsys):
    out = tmp_path / "tiny.onnx"
    assert export_job.main([str(model_file), "--format", "onnx", str(out)]) == 0
    assert out.is_file()
    assert "H and W multiples of 4" in capsys.readouterr().out


def test_cli_refuses_an_existing_out_unless_overwrite(tmp_path, model_file, capsys):
    out = tmp_path / "tiny.onnx"
    out.write_bytes(b"not a model")
    assert export_job.main([str(model_file), "--format", "onnx", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"not a model"
    assert export_job.main([str(model_file), "--format", "onnx", str(out), "--overwrite"]) == 0
    assert out.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.keras", "tiny.onnx"]


def test_overwrite_never_replaces_a_folder_that_is_not_a_saved_model(tmp_path, model_file, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"jpeg")
    for fmt in ("saved_model", "onnx"):
        code = export_job.main([str(model_file), "--format", fmt, str(photos), "--overwrite"])
        assert code == 2
        assert "refusing to replace" in capsys.readouterr().err
    assert (photos / "a.jpg").read_bytes() == b"jpeg"


def test_overwrite_replaces_a_saved_model(tmp_path, model_file):
    out = tmp_path / "sm"
    args = [str(model_file), "--format", "saved_model", str(out)]
    assert export_job.main(args) == 0
    assert (out / "saved_model.pb").is_file()
    assert export_job.main([*args, "--overwrite"]) == 0
    assert (out / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm", "tiny.keras"]


def test_cli_refuses_out_that_is_the_model(tmp_path, model_file, capsys):
    before = model_file.read_bytes()
    args = [str(model_file), "--format", "onnx", str(model_file), "--overwrite"]
    assert export_job.main(args) == 2
    assert "would replace the model" in capsys.readouterr().err
    assert model_file.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--format", "onnx", "{out}"], "does not exist"),
        (["{model}", "--format", "coreml", "{out}"], "unknown format 'coreml'"),
        (["{model}", "--format", "onnx", "{tmp}/no/such/dir/m.onnx"], "does not exist"),
        (["{bad}", "--format", "onnx", "{out}"], "cannot load model"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, model_file, capsys, args, message):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    values = {
        "missing": tmp_path / "missing.keras",
        "model": model_file,
        "out": tmp_path / "out.onnx",
        "tmp": tmp_path,
        "bad": bad,
    }
    argv = [a.format(**values) for a in args]
    assert export_job.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out.onnx").exists()
