"""What one ``denoise train`` run is: a frozen, validated configuration.

Built once on the driver from the command line (:meth:`TrainConfig.from_args`),
checked once (``__post_init__``), handed to every Ray Train worker as it is, and
written into the model card with :func:`dataclasses.asdict`. The patch sampler
gets its own small frozen part, :class:`denoise_core.patches.SamplerConfig`, so
the Ray Data tasks never see the trainer's fields and nothing is re-checked there.

No Ray, TensorFlow or Keras here: the driver validates before Ray starts.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import manifest, noise
from .precision import PRECISIONS
from .training import LOSSES, SCHEDULES

__all__ = ["ConfigError", "LOSSES", "SCHEDULES", "SamplerConfig", "TrainConfig", "parse_data_args"]

PLACEMENTS = ("PACK", "SPREAD", "STRICT_SPREAD")
COLOR_CLIPS = ("hard", "fit")
VAL_TILE = 512  # validation tiles: whole Kodak-sized images in two tiles, memory bounded
DEFAULT_STEPS = 1000


class ConfigError(ValueError):
    """A field that cannot train; ``flag`` is its command-line spelling for the one error line."""

    def __init__(self, name: str, rule: str) -> None:
        super().__init__(f"{name} {rule}")
        self.name, self.rule = name, rule

    @property
    def flag_message(self) -> str:
        return f"--{self.name.replace('_', '-')} {self.rule}"


def check_positive(obj: Any, names: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` for the first of ``names`` that is set and not > 0 (NaN too)."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and not value > 0:
            raise ConfigError(name, f"must be positive, got {value:g}")


def parse_data_args(values: list[str] | tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    """``URI[@WEIGHT]`` arguments -> ((uri, weight), ...); an ``@`` inside the path stays."""
    out = []
    for v in values:
        uri, _, weight = v.rpartition("@") if "@" in v.rsplit("/", 1)[-1] else (v, "", "")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError("data", f"weight must be a number, got {v!r}") from None
        if not (math.isfinite(w) and w > 0):
            raise ConfigError("data", f"weight must be positive, got {v!r}")
        out.append((uri, w))
    return tuple(out)


@dataclass(frozen=True)
class SamplerConfig:
    """What the patch sampler (a Ray Data task) needs: crops, augmentation and noise.

    Field order is :class:`denoise_core.patches.PatchSampler`'s old positional order.
    """

    patch: int
    noise: str = "gaussian:0-55"  # specs joined by ';' are mixed uniformly
    augment: bool = True  # random crops, flips, rotations (off: centre crops, for tests)
    seed: int | None = None
    patches_per_image: int = 1
    color_augment: bool = False  # applies only when augment is on
    color_clip: str = "hard"
    scale_augment: float = 1.0  # smallest downscale factor; 1.0 = off
    dead_leaves: float = 0.0  # share of synthetic-noise samples drawn, not cropped

    def __post_init__(self) -> None:
        check_positive(self, ("patch", "patches_per_image"))
        if self.color_clip not in COLOR_CLIPS:
            raise ConfigError("color_clip", f"must be one of {', '.join(COLOR_CLIPS)}")
        if not 0.0 < self.scale_augment <= 1.0:
            raise ConfigError("scale_augment", f"must be in (0, 1], got {self.scale_augment:g}")
        if not 0.0 <= self.dead_leaves <= 1.0:
            raise ConfigError("dead_leaves", f"must be in [0, 1], got {self.dead_leaves:g}")
        try:
            self.noise_specs()
        except ValueError as exc:
            raise ConfigError("noise", str(exc)) from None

    def noise_specs(self) -> list[noise.NoiseSpec]:
        """The parsed ``noise`` specs; each clean sample draws one uniformly."""
        specs = [noise.parse_noise_spec(s) for s in self.noise.split(";") if s.strip()]
        if not specs:
            raise ValueError(f"no noise spec in {self.noise!r}")
        return specs


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run; see ``denoise train --help`` for each field."""

    data: tuple[tuple[str, float], ...]
    storage: str
    sampler: SamplerConfig
    val_sets: tuple[tuple[str, str], ...] = ()  # (URI, split); default: the first --data set
    val_split: str = "val"  # the split of a --val set given without #SPLIT
    val_limit: int = 24
    val_noise: str = "gaussian:25"
    model: str = "unet"
    model_args: dict = field(default_factory=dict)
    init_from: str | None = None
    grow: bool = False
    teacher: str | None = None  # distil from this model (a .keras URI)
    teacher_weight: float = 0.5  # share of the loss against the teacher's output
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float | None = None
    steps: int | None = None  # None: from --epochs once the data set is known, else 1000
    epochs: float | None = None
    minutes: float | None = None
    batch_size: int = 16
    loss: str = "l1"
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup_steps: int = 100
    precision: str = "fp32"
    clipnorm: float | None = None
    val_every: int = 250
    keep: int = 3
    max_failures: int = 2
    placement: str = "PACK"
    resume: bool = False
    resume_if_any: bool = False
    threads: int = 0  # intra-op threads per worker (0: TensorFlow's default)
    fail_at_step: str | None = None  # test hook "STEP:RANK"

    def __post_init__(self) -> None:
        check_positive(self, ("steps", "epochs", "batch_size", "val_every", "keep", "workers",
                              "val_limit", "minutes", "clipnorm", "cpus_per_worker"))  # fmt: skip
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError("lr", f"must be a positive finite number, got {self.lr:g}")
        for name in ("warmup_steps", "gpus_per_worker", "max_failures"):
            if not getattr(self, name) >= 0:
                raise ConfigError(name, f"must not be negative, got {getattr(self, name):g}")
        for name, allowed in (("loss", LOSSES), ("schedule", SCHEDULES),
                              ("precision", PRECISIONS), ("placement", PLACEMENTS)):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ConfigError(name, f"must be one of {', '.join(allowed)}")
        if not self.data:
            raise ConfigError("data", "needs at least one data set")
        if not 0.0 < self.teacher_weight <= 1.0:
            raise ConfigError("teacher_weight", f"must be in (0, 1], got {self.teacher_weight:g}")
        if self.grow and not self.init_from:
            raise ConfigError("grow", "needs --init-from (the trained model to grow)")
        if self.batch_size % self.workers:
            raise ConfigError(
                "batch_size", f"{self.batch_size} must be divisible by --workers {self.workers}"
            )
        if self.resume and self.resume_if_any:
            raise ConfigError("resume", "and --resume-if-any exclude each other")
        if not self.val_sets:
            object.__setattr__(self, "val_sets", ((self.data[0][0], self.val_split),))
        if len(set(self.val_sets)) < len(self.val_sets):
            raise ConfigError("val", "names the same set and split twice")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """The configuration ``denoise train``'s parsed arguments describe (URIs as given)."""
        try:
            model_args = json.loads(args.model_args) if isinstance(args.model_args, str) else {}
        except ValueError as exc:
            raise ConfigError("model_args", f"is not JSON: {exc}") from None
        if not isinstance(model_args, dict):
            raise ConfigError("model_args", "must be a JSON object")
        sampler = SamplerConfig(
            patch=args.patch,
            noise=args.noise,
            augment=not args.no_augment,
            seed=args.seed,
            patches_per_image=args.patches_per_image,
            color_augment=args.color_augment,
            color_clip=args.color_clip,
            scale_augment=args.scale_augment,
            dead_leaves=args.dead_leaves,
        )
        names = {f.name for f in fields(cls)} - {"data", "sampler", "model_args", "val_sets"}
        val_sets = []
        for spec in args.val or ():
            uri, split = manifest.parse_set_spec(spec)
            val_sets.append((uri, split or args.val_split))
        return cls(
            data=parse_data_args(args.data),
            sampler=sampler,
            model_args=model_args,
            val_sets=tuple(val_sets),
            **{n: getattr(args, n) for n in names if hasattr(args, n)},
        )

    @property
    def data_uris(self) -> list[str]:
        return [uri for uri, _ in self.data]

    def card(self) -> dict:
        """The card's ``training`` section: every field (``asdict``), the sampler's flattened."""
        out = asdict(self)
        out.update(out.pop("sampler"))
        out["data"] = [list(d) for d in self.data]
        return out
