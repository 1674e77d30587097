"""The run folder both trainers write and ``denoise promote`` reads: its one owner.

Layout (local path or ``s3://``)::

    RUN/ray/attempt-NNN/checkpoint_<step:08d>/{model.keras, optimizer.npz, state.json}
    RUN/jax/attempt-NNN/checkpoint_<step:08d>/{model.keras, state.json}   (GPU trainer)
    RUN/tensorboard/                                                       (denoise train)
    RUN/model/{model.keras, saved_model/, model_card.json}                 (the export)

Every checkpoint holds ``state.json`` with at least ``step`` and, where validated,
``val_psnr``: that is how checkpoints are listed, chosen (best by validation PSNR,
last by step) and exported, whichever trainer wrote them. The model card written
here carries the same fields for both trainers (command, data, validation,
training, hardware, git commit, architecture, best and last checkpoint), and
:func:`lineage_entry` is what ``denoise promote`` appends to the packaged card.

No Ray and no TensorFlow: Keras is imported only by :func:`export_best`.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from datetime import datetime, timezone

from . import storage

__all__ = [
    "CARD_FILE", "MODEL_DIR", "MODEL_FILE", "RAY_DIR", "JAX_DIR", "STATE_FILE", "TB_DIR",
    "checkpoint_states", "choose", "export_best", "find_checkpoint", "git_commit",
    "hardware", "lineage_entry", "next_attempt", "read_card", "write_card",
]  # fmt: skip

RAY_DIR = "ray"  # denoise train: one Ray Train run (attempt) per invocation
JAX_DIR = "jax"  # jobs/train_jax.py, the GPU trainer
TRAINER_DIRS = (RAY_DIR, JAX_DIR)
MODEL_DIR = "model"
TB_DIR = "tensorboard"
MODEL_FILE = "model.keras"
OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"
CARD_FILE = "model_card.json"
CHECKPOINT_PREFIX = "checkpoint_"
ATTEMPT_PREFIX = "attempt-"


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:08d}"


def checkpoint_states(run_uri: str) -> list[tuple[str, dict]]:
    """(checkpoint URI, its state.json) of every checkpoint in the run, any trainer, any attempt."""
    found = []
    for trainer_dir in TRAINER_DIRS:
        fs, path = storage.open_fs(storage.join(run_uri, trainer_dir))
        fs.invalidate_cache()  # Ray workers wrote the checkpoints: never trust a cached listing
        if not fs.exists(path):
            continue
        pattern = f"{path.rstrip('/')}/{ATTEMPT_PREFIX}*/{CHECKPOINT_PREFIX}*/{STATE_FILE}"
        for state_path in fs.glob(pattern):
            with fs.open(state_path, "rb") as f:
                state = json.load(f)
            found.append((storage.protocol_uri(fs, state_path.rsplit("/", 1)[0]), state))
    return found


def _val_psnr(state: dict) -> float:
    """A checkpoint's validation PSNR for ranking; unvalidated (absent, None, NaN) ranks last."""
    v = state.get("val_psnr")
    return v if isinstance(v, int | float) and v == v else float("-inf")


def choose(states: list[tuple[str, dict]], which: str) -> tuple[str, dict] | None:
    """'best' (highest val PSNR), 'last' (highest step) or a step number among ``states``."""
    if not states:
        return None
    if which == "best":
        return max(states, key=lambda s: _val_psnr(s[1]))
    if which == "last":
        return max(states, key=lambda s: s[1]["step"])
    if not str(which).isdigit():
        raise ValueError(f"a checkpoint is best, last or a step, got {which!r}")
    return next((s for s in states if s[1]["step"] == int(which)), None)


def find_checkpoint(run_uri: str, which: str) -> tuple[str, dict] | None:
    """(URI, state) of ``which`` ('best', 'last' or a step) in a run; None when absent."""
    return choose(checkpoint_states(run_uri), which)


def next_attempt(run_uri: str, trainer_dir: str = RAY_DIR) -> str:
    """The folder name of this invocation's attempt: one more than the run holds."""
    fs, path = storage.open_fs(storage.join(run_uri, trainer_dir))
    fs.invalidate_cache()
    existing = fs.glob(f"{path.rstrip('/')}/{ATTEMPT_PREFIX}*") if fs.exists(path) else []
    return f"{ATTEMPT_PREFIX}{len(existing) + 1:03d}"


def upload_dir(local: str, uri: str) -> None:
    """Copy a local folder's contents to ``uri`` (merging into what is there)."""
    fs, path = storage.open_fs(uri)
    if storage.is_remote_fs(fs):
        fs.put(local.rstrip("/") + "/", path, recursive=True)
    else:
        import shutil

        shutil.copytree(local, path, dirs_exist_ok=True)


def download_dir(uri: str, local: str) -> None:
    fs, path = storage.open_fs(uri)
    fs.get(path.rstrip("/") + "/", local, recursive=True)


def write_checkpoint(checkpoint_uri: str, model_path: str, state: dict) -> None:
    """A checkpoint from a local ``.keras`` file and its state (the GPU trainer's way;
    Ray Train uploads ``denoise train``'s). state.json goes last: it is what marks the
    checkpoint as complete to :func:`checkpoint_states`."""
    with open(model_path, "rb") as f:
        storage.write_bytes_atomic(storage.join(checkpoint_uri, MODEL_FILE), f.read())
    storage.write_bytes_atomic(
        storage.join(checkpoint_uri, STATE_FILE), json.dumps(state, indent=2).encode()
    )


def prune(run_uri: str, keep: int) -> list[str]:
    """Delete all but the ``keep`` best checkpoints by val PSNR and the newest; returns
    the URIs deleted (the GPU trainer checkpoints every minute)."""
    states = checkpoint_states(run_uri)
    ranked = sorted(states, key=lambda s: _val_psnr(s[1]), reverse=True)
    kept = {uri for uri, _ in ranked[:keep]} | {choose(states, "last")[0]} if states else set()
    gone = [uri for uri, _ in states if uri not in kept]
    for uri in gone:
        fs, path = storage.open_fs(uri)
        fs.rm(path, recursive=True)
    return gone


def hardware(**extra) -> dict:
    """The CPU model (lscpu) plus what the trainer knows (Ray's cluster resources, the GPU)."""
    model_name = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        model_name = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")),
            model_name,
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu_model": model_name, **extra}


def gpu_name() -> str | None:
    """``nvidia-smi``'s GPU name(s), or None without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def git_commit() -> str | None:
    """The commit of the code that trained (the repository this package sits in)."""
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=os.path.dirname(os.path.abspath(__file__)),
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def command_line(prog: list[str], argv: list[str] | None) -> str:
    """The exact command the lineage records: ``prog`` and the arguments it was given
    (``argv``), or, when called as a program, the process's own command line."""
    if argv is not None:
        return shlex.join([*prog, *argv])
    if os.path.basename(sys.argv[0]) == "denoise":
        return shlex.join(["denoise", *sys.argv[1:]])
    return shlex.join([sys.executable, *sys.argv])


def base_card(command: str, data: list[dict], validation: dict, training: dict, **extra) -> dict:
    """The fields every trainer's card has before the export adds the model's own."""
    return {
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": data,
        "validation": validation,
        "training": training,
        "git_commit": git_commit(),
        **extra,
    }


def write_card(run_uri: str, card: dict) -> None:
    storage.write_bytes_atomic(
        storage.join(run_uri, MODEL_DIR, CARD_FILE),
        json.dumps(card, indent=2, sort_keys=True).encode(),
    )


def read_card(run_uri: str) -> dict:
    return json.loads(storage.read_bytes(storage.join(run_uri, MODEL_DIR, CARD_FILE)))


def exported_model_uri(run_uri: str) -> str:
    return storage.join(run_uri, MODEL_DIR, MODEL_FILE)


def export_best(run_uri: str, card: dict, saved_model: bool = True) -> dict:
    """Best checkpoint by val PSNR -> RUN/model/{model.keras, saved_model/, model_card.json}.

    The model is exported in float32: a bf16-trained checkpoint pins bf16 layers, and
    the inference side chooses its own precision (``denoise run --precision``). The
    SavedModel needs TensorFlow; the GPU trainer (JAX, no TensorFlow) passes False.
    """
    from . import models

    states = checkpoint_states(run_uri)
    if not states:
        raise RuntimeError(f"no checkpoint found under {run_uri}")
    best_uri, best_state = choose(states, "best")
    _, latest_state = choose(states, "last")
    with tempfile.TemporaryDirectory() as tmp:
        local_model = os.path.join(tmp, MODEL_FILE)
        with open(local_model, "wb") as f:
            f.write(storage.read_bytes(storage.join(best_uri, MODEL_FILE)))
        model = models.with_precision(models.load_model(local_model), "fp32")
        model.save(local_model)
        info = models.model_info(model)
        with open(local_model, "rb") as f:
            storage.write_bytes_atomic(exported_model_uri(run_uri), f.read())
        if saved_model:
            saved = os.path.join(tmp, "saved_model")
            model.export(saved, format="tf_saved_model", verbose=False)
            upload_dir(saved, storage.join(run_uri, MODEL_DIR, "saved_model"))
    card = {
        **card,
        "architecture": {"name": model.name, **info},
        "steps": latest_state["step"],
        "best_checkpoint": best_uri,
        "best": {k: best_state.get(k) for k in ("step", "val_psnr", "val_ssim", "val_noisy_psnr")},
        "last": {k: latest_state.get(k) for k in ("step", "val_psnr", "val_ssim", "loss")},
    }
    write_card(run_uri, card)
    return card


def lineage_entry(run_uri: str, card: dict, note: str = "") -> dict:
    """What ``denoise promote`` records of a run (either trainer's card) in the lineage."""
    return {
        "run": os.path.basename(run_uri.rstrip("/")),
        "command": card.get("command"),
        "steps": card.get("steps"),
        "wall_time_s": card.get("wall_time_s"),
        "data": card.get("data"),
        "validation": card.get("validation"),
        "best": card.get("best"),
        "init_from": (card.get("training") or {}).get("init_from"),
        "hardware": card.get("hardware"),
        "git_commit": card.get("git_commit"),
        "note": note,
    }
