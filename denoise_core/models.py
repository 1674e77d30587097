"""Keras 3 denoiser architectures and a small registry.

Every model maps float32 RGB images in [0, 1] of any size, shape
``(None, None, None, 3)``, to the denoised image. Models that downsample need
H and W divisible by :func:`model_size_multiple`. The last layers run in
float32 so the models work under the ``"mixed_bfloat16"`` policy, and only
registered custom layers are used (no ``Lambda``), so a saved ``.keras`` file
reloads with ``keras.models.load_model(path, safe_mode=True)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import layers, ops

from . import precision as precision_names

__all__ = [
    "MODEL_NAMES",
    "DepthToSpace",
    "SpaceToDepth",
    "build_model",
    "dncnn",
    "load_model",
    "model_info",
    "model_size_multiple",
    "seed_cnn",
    "unet",
]

_PACKAGE = "denoise_core"


# --------------------------------------------------------------------------
# Custom layers (registered so that safe_mode=True loading works)
# --------------------------------------------------------------------------


def _use_tf_ops() -> bool:
    return keras.backend.backend() == "tensorflow"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpaceToDepth(layers.Layer):
    """Rearranges ``b×b`` pixel blocks into channels: (H, W, C) -> (H/b, W/b, b·b·C).

    Same channel order as ``tf.nn.space_to_depth``, which it uses on the
    TensorFlow backend (one native op, exportable to TFLite/ONNX).
    """

    def __init__(self, block_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, x):
        if _use_tf_ops():
            import tensorflow as tf

            return tf.nn.space_to_depth(x, self.block_size)
        return space_to_depth_ops(x, self.block_size)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        b = self.block_size
        return (n, None if h is None else h // b, None if w is None else w // b, c * b * b)

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DepthToSpace(layers.Layer):
    """Inverse of :class:`SpaceToDepth`: (H, W, b·b·C) -> (H·b, W·b, C)."""

    def __init__(self, block_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, x):
        if _use_tf_ops():
            import tensorflow as tf

            return tf.nn.depth_to_space(x, self.block_size)
        return depth_to_space_ops(x, self.block_size)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        b = self.block_size
        return (n, None if h is None else h * b, None if w is None else w * b, c // (b * b))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


def space_to_depth_ops(x, block_size: int):
    """Backend-agnostic space-to-depth with ``keras.ops`` (NHWC)."""
    b = block_size
    _, h, w, c = ops.shape(x)
    x = ops.reshape(x, (-1, h // b, b, w // b, b, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, h // b, w // b, b * b * c))


def depth_to_space_ops(x, block_size: int):
    """Backend-agnostic depth-to-space with ``keras.ops`` (NHWC)."""
    b = block_size
    _, h, w, c = ops.shape(x)
    x = ops.reshape(x, (-1, h, w, b, b, c // (b * b)))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, h * b, w * b, c // (b * b)))


# --------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------


def _image_input(channels: int) -> keras.KerasTensor:
    return keras.Input(shape=(None, None, channels), name="noisy")


def seed_cnn(
    filters: Sequence[int] = (32, 64, 64, 32), channels: int = 3, name: str = "seed_cnn"
) -> keras.Model:
    """The student notebook's baseline: plain 3×3 ReLU convs, sigmoid predicts the clean image.

    Kept as the reference point every other model must beat.
    """
    inputs = _image_input(channels)
    x = inputs
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = layers.Conv2D(channels, 3, padding="same", name="conv_out")(x)
    outputs = layers.Activation("sigmoid", dtype="float32", name="clean")(x)
    return keras.Model(inputs, outputs, name=name)


def dncnn(
    depth: int = 17, filters: int = 64, channels: int = 3, name: str = "dncnn"
) -> keras.Model:
    """DnCNN (Zhang et al. 2017): the net predicts the noise, output = input - noise.

    ``depth`` counts all conv layers: Conv+ReLU, (depth-2)×(Conv+BN+ReLU), Conv.
    """
    if depth < 2:
        raise ValueError(f"dncnn depth must be >= 2, got {depth}")
    inputs = _image_input(channels)
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name="conv0")(inputs)
    for i in range(1, depth - 1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
    x = layers.Conv2D(channels, 3, padding="same", name=f"conv{depth - 1}")(x)
    noise = layers.Activation("linear", dtype="float32", name="noise")(x)
    outputs = layers.Subtract(dtype="float32", name="clean")([inputs, noise])
    return keras.Model(inputs, outputs, name=name)


def _conv_block(x, width: int, blocks: int, activation: str, prefix: str):
    for i in range(blocks):
        x = layers.Conv2D(width, 3, padding="same", name=f"{prefix}_conv{i}")(x)
        x = layers.Activation(activation, name=f"{prefix}_act{i}")(x)
    return x


def _res_block(x, width: int, activation: str, prefix: str):
    """conv-act-conv added to its input. The second conv starts at zero, so a new block
    is the identity: blocks can be added to a trained model without changing its output
    (:func:`transfer_weights`), and training then grows them from there."""
    y = layers.Conv2D(width, 3, padding="same", name=f"{prefix}_conv_a")(x)
    y = layers.Activation(activation, name=f"{prefix}_act")(y)
    y = layers.Conv2D(
        width, 3, padding="same", kernel_initializer="zeros", name=f"{prefix}_conv_b"
    )(y)
    return layers.Add(name=f"{prefix}_add")([x, y])


def _global_gate(x, width: int, prefix: str):
    """``x`` scaled per channel by 1 + a 1×1 conv of its mean over the whole input: the
    simplified channel attention of NAFNet (Chen et al. 2022). It tells every pixel what
    the image (tile) as a whole looks like, its noise level and kind among it, which a
    blind network otherwise guesses from its receptive field. The conv starts at zero,
    so a new gate is the identity and can be grown into a trained model."""
    g = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}_pool")(x)
    g = layers.Conv2D(width, 1, kernel_initializer="zeros", name=f"{prefix}_gate")(g)
    g = layers.Rescaling(1.0, offset=1.0, name=f"{prefix}_one_plus")(g)
    return layers.Multiply(name=f"{prefix}_scale")([x, g])


def _downsample(x, width: int, mode: str, activation: str, prefix: str):
    if mode == "maxpool":
        return layers.MaxPooling2D(2, name=f"{prefix}_pool")(x)
    if mode == "conv":
        x = layers.Conv2D(width, 3, strides=2, padding="same", name=f"{prefix}_down")(x)
        return layers.Activation(activation, name=f"{prefix}_down_act")(x)
    raise ValueError(f"unknown down={mode!r}; use 'maxpool' or 'conv'")


def _upsample(x, width: int, mode: str, prefix: str):
    if mode == "transpose":
        return layers.Conv2DTranspose(width, 2, strides=2, name=f"{prefix}_up")(x)
    if mode == "d2s":
        x = layers.Conv2D(width * 4, 1, name=f"{prefix}_up_conv")(x)
        return DepthToSpace(2, name=f"{prefix}_up")(x)
    raise ValueError(f"unknown up={mode!r}; use 'transpose' or 'd2s'")


def unet(
    widths: Sequence[int] = (32, 64, 128, 256),
    blocks_per_level: int = 2,
    stem: str = "full",
    activation: str = "relu",
    down: str = "maxpool",
    up: str = "transpose",
    channels: int = 3,
    zero_init_last: bool = False,
    res_blocks: int = 0,
    global_context: bool = False,
    name: str = "unet",
) -> keras.Model:
    """U-Net with skip connections and a global residual: output = input + net(input).

    ``stem="s2d"`` runs the whole U-Net at half resolution behind a 2×
    space-to-depth (and depth-to-space at the end): about 4× fewer FLOPs per
    pixel, faster inference, but less learned per training step.
    ``zero_init_last`` makes the untrained model the identity. ``res_blocks``
    adds that many identity-initialised residual blocks after the bottleneck and
    after each decoder level (about 21 GFLOP/MP per block with widths 24..192).
    ``global_context`` adds an identity-initialised channel gate from the whole input's
    mean (:func:`_global_gate`) after the first level, the bottleneck and each decoder
    level: no measurable FLOPs, and grown into a trained model it changes nothing yet.
    """
    if stem not in ("full", "s2d"):
        raise ValueError(f"unknown stem={stem!r}; use 'full' or 's2d'")
    if len(widths) < 1:
        raise ValueError("widths must name at least one level")
    inputs = _image_input(channels)
    x = inputs
    out_channels = channels
    if stem == "s2d":
        x = SpaceToDepth(2, name="stem_s2d")(x)
        out_channels = channels * 4

    skips = []
    for level, width in enumerate(widths[:-1]):
        x = _conv_block(x, width, blocks_per_level, activation, f"enc{level}")
        if global_context and level == 0:
            x = _global_gate(x, width, "enc0_global")
        skips.append(x)
        x = _downsample(x, width, down, activation, f"enc{level}")

    x = _conv_block(x, widths[-1], blocks_per_level, activation, "mid")
    for i in range(res_blocks):
        x = _res_block(x, widths[-1], activation, f"mid_res{i}")
    if global_context:
        x = _global_gate(x, widths[-1], "mid_global")

    for level in reversed(range(len(widths) - 1)):
        x = _upsample(x, widths[level], up, f"dec{level}")
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = _conv_block(x, widths[level], blocks_per_level, activation, f"dec{level}")
        for i in range(res_blocks):
            x = _res_block(x, widths[level], activation, f"dec{level}_res{i}")
        if global_context:
            x = _global_gate(x, widths[level], f"dec{level}_global")

    init = "zeros" if zero_init_last else "glorot_uniform"
    x = layers.Conv2D(out_channels, 3, padding="same", kernel_initializer=init, name="head")(x)
    if stem == "s2d":
        x = DepthToSpace(2, name="stem_d2s")(x)
    residual = layers.Activation("linear", dtype="float32", name="residual")(x)
    outputs = layers.Add(dtype="float32", name="clean")([inputs, residual])
    return keras.Model(inputs, outputs, name=name)


def unet_s2d(**kwargs) -> keras.Model:
    """Preset: :func:`unet` behind the 2× space-to-depth stem (the fast inference model)."""
    kwargs.setdefault("name", "unet_s2d")
    return unet(stem="s2d", **kwargs)


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., keras.Model]] = {
    "seed_cnn": seed_cnn,
    "dncnn": dncnn,
    "unet": unet,
    "unet_s2d": unet_s2d,
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)
DEFAULT_MODEL = "unet"


def _check_name(name: str) -> str:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return name


def build_model(name: str = DEFAULT_MODEL, **kwargs) -> keras.Model:
    """Builds a registered model by name; ``kwargs`` go to its builder."""
    return _REGISTRY[_check_name(name)](**kwargs)


def load_model(path: str, compile: bool = False) -> keras.Model:
    """Loads a saved ``.keras`` model safely; importing this module registers our layers."""
    return keras.models.load_model(path, safe_mode=True, compile=compile)


# Output layers every builder pins to float32: the residual add and the clipping
# range need more than bf16's 8-bit mantissa (about 0.5 of an 8-bit step near 1.0).
FLOAT32_OUTPUT_LAYERS = frozenset({"residual", "clean", "noise"})
# Keras dtype policy per precision name (denoise_core.precision: the one vocabulary).
PRECISION_POLICIES = precision_names.POLICIES


def as_teacher(model: keras.Model, precision: str) -> keras.Model:
    """``model`` as a distillation teacher: frozen, computing in the student's precision."""
    teacher = with_precision(model, precision)
    teacher.trainable = False
    return teacher


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """The same model and weights computing in ``precision`` (fp32, bf16, fp16).

    A trained fp32 model is rebuilt layer by layer with a mixed policy (variables
    stay float32, convolutions run in the low precision); the output layers stay
    float32. bf16 roughly doubles CPU throughput where the CPU has AVX-512 BF16 or
    AMX (README, "Run"); its effect on PSNR is measured by ``denoise benchmark``.
    """
    policy = PRECISION_POLICIES[precision_names.check(precision)]

    def wanted(layer) -> str:
        return "float32" if layer.name in FLOAT32_OUTPUT_LAYERS else policy

    if all(
        layer.dtype_policy.name == wanted(layer)
        for layer in _iter_layers(model)
        if not isinstance(layer, layers.InputLayer)
    ):
        return model  # already there: the caller keeps the live model (training validates it)

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = wanted(layer)
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone)
    clone.set_weights(model.get_weights())
    return clone


def transfer_weights(source: keras.Model, target: keras.Model) -> tuple[int, int]:
    """Copy every layer's weights from ``source`` into the same-named layer of ``target``.

    For growing a trained model (e.g. a U-Net with ``res_blocks`` added): every
    source layer that holds weights must exist in ``target`` with the same shapes,
    or this raises, naming it. Returns (layers copied, target layers left as built).
    """
    target_layers = {layer.name: layer for layer in _iter_layers(target)}
    copied = set()
    for layer in _iter_layers(source):
        weights = layer.get_weights()
        if not weights:
            continue
        match = target_layers.get(layer.name)
        shapes = [w.shape for w in weights]
        if match is None or [tuple(w.shape) for w in match.get_weights()] != shapes:
            found = "missing" if match is None else "shaped differently"
            raise ValueError(
                f"cannot grow {source.name!r} into {target.name!r}: layer {layer.name!r} "
                f"is {found} in the new model"
            )
        match.set_weights(weights)
        copied.add(layer.name)
    fresh = [n for n, la in target_layers.items() if la.weights and n not in copied]
    return len(copied), len(fresh)


def _iter_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _iter_layers(layer)
        else:
            yield layer


def model_size_multiple(model_or_name: keras.Model | str, **kwargs) -> int:
    """The factor H and W must be divisible by.

    For a model: product of the strides of its downsampling layers (they are in
    series in every model here), so it also works on reloaded models. For a
    name: computed from the builder's arguments without building.
    """
    if isinstance(model_or_name, str):
        name = _check_name(model_or_name)
        if name not in ("unet", "unet_s2d"):
            return 1
        widths = kwargs.get("widths", (32, 64, 128, 256))
        stem = "s2d" if name == "unet_s2d" else kwargs.get("stem", "full")
        return 2 ** (len(widths) - 1) * (2 if stem == "s2d" else 1)

    multiple = 1
    for layer in _iter_layers(model_or_name):
        if isinstance(layer, SpaceToDepth):
            multiple *= layer.block_size
        elif isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D)):
            multiple *= int(layer.strides[0])
        elif isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.Conv2DTranspose):
            multiple *= int(layer.strides[0])
    return multiple


def _layer_flops(layer, in_shape, out_shape) -> int:
    """FLOPs (2 × multiply-adds) of one layer call with batch 1; 0 for cheap layers."""
    if isinstance(layer, layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        _, h, w, cin = in_shape
        return 2 * h * w * cin * kh * kw * layer.filters
    if isinstance(layer, layers.Conv2D):
        kh, kw = layer.kernel_size
        _, h, w, cout = out_shape
        cin = in_shape[-1] // layer.groups
        return 2 * h * w * cout * kh * kw * cin
    if isinstance(layer, layers.Dense):
        positions = 1
        for d in in_shape[1:-1]:
            positions *= d
        return 2 * positions * in_shape[-1] * layer.units
    return 0


def model_info(model: keras.Model, size: int = 256) -> dict:
    """Parameter count and analytic FLOPs per megapixel (Conv2D/Conv2DTranspose/Dense).

    The model is re-instantiated on a fixed 1×size×size×C input so every
    layer has concrete shapes; FLOPs scale linearly with pixels, so the count
    is scaled to 10^6 pixels. ``size`` must be a multiple of the size multiple.
    """
    multiple = model_size_multiple(model)
    if size % multiple:
        raise ValueError(f"size {size} is not a multiple of the model's size multiple {multiple}")
    channels = model.inputs[0].shape[-1]
    fixed = keras.Model.from_config(_fixed_input_config(model.get_config(), size, channels))
    flops = 0
    for layer in _iter_layers(fixed):
        for node in layer._inbound_nodes:
            if not node.input_tensors:
                continue
            in_shape = tuple(node.input_tensors[0].shape)
            out_shape = tuple(node.outputs[0].shape)
            flops += _layer_flops(layer, in_shape, out_shape)
    return {
        "name": model.name,
        "params": int(model.count_params()),
        "trainable_params": int(sum(int(ops.size(w)) for w in model.trainable_weights)),
        "flops_per_megapixel": flops * 1e6 / (size * size),
        "size_multiple": multiple,
    }


def _fixed_input_config(config: dict, size: int, channels: int) -> dict:
    config = dict(config)
    new_layers = []
    for layer_cfg in config["layers"]:
        if layer_cfg["class_name"] == "InputLayer":
            layer_cfg = {**layer_cfg, "config": dict(layer_cfg["config"])}
            layer_cfg["config"]["batch_shape"] = (1, size, size, channels)
        new_layers.append(layer_cfg)
    config["layers"] = new_layers
    return config
