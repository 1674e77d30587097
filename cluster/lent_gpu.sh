#!/usr/bin/env bash
# One prepared training run on a lent GPU machine (JAX, no TensorFlow, no Ray, nothing
# to fetch there): prepare the data and wheels here, then run the same script there.
#
#   cluster/lent_gpu.sh prepare [SHARED_DATA] [POLYU_INGESTED]
#       here, in the repo root: fills .gpu/ (ignored through .git/info/exclude):
#       .gpu/clean   CBSD432 (clean training photos, as shipped: JPEG)
#       .gpu/pairs   PolyU pairs of the ingested set's TRAIN split only (the original
#                    JPEGs), so the 23 held-out pairs the benchmark uses stay unseen
#       .gpu/pairs-sidd  SIDD scene0001 (SIDD's training split; never the samples),
#                    as lossless WebP to fit the 64 MiB a device call carries
#       .gpu/val     the first 6 Kodak24 images (validation, as denoise train's)
#       .gpu/whl     the wheels the device image lacks (keras, namex, optree, fpng)
#                    for its Python 3.12 (no pillow-heif: training reads no HEIC)
#   cluster/lent_gpu.sh train TIER MINUTES [jobs.train_jax options ...]
#       there (device `run`, carry [".gpu"]): TIER is default (warm start of the
#       packaged U-Net) or fast (the fast tier, distilled from the default);
#       writes $OUT/TIER/{model.keras,model_card.json,log.jsonl}; `denoise promote`
#       takes the run folder once the files are copied back under one.
#   cluster/lent_gpu.sh both MINUTES [jobs.train_jax options ...]
#       there: both tiers side by side on the one GPU (half the host cores each for
#       the host-sampled noise), logs in $OUT/TIER.log: one machine start, one compile
#       time, 8 files back (what a device call returns at most).
#   cluster/lent_gpu.sh smoke
#       here: the train step of both tiers for a few seconds on the CPU with JAX
#       (pip install -e '.[jax]'), from .gpu/, to catch a broken command before
#       spending device minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

# Here the project's venv (denoise_core, pyarrow); there the image's python3 (JAX).
PYTHON=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
KERAS_VERSION=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("keras"))' 2>/dev/null || echo 3.15.1)
NONFINITE_EXIT=3  # jobs.train_jax.NONFINITE_EXIT
DEVICE_WHEELS=("keras==$KERAS_VERSION" namex optree "fpng>=0.1")
# Both pair sets in the pair rows of a batch, PolyU 0.6 : SIDD 0.4 (the default tier's
# CPU recipe: --data polyu@0.12 --data sidd0001@0.08). Without SIDD pairs, 7 GPU minutes
# of the default lost 1.09 dB on the SIDD sample crops (2026-11-27).
DATA_ARGS="--clean .gpu/clean --pairs .gpu/pairs@0.6 --pairs .gpu/pairs-sidd@0.4 --val .gpu/val"

prepare() {
    local shared=${1:-../shared/data} polyu=${2:-runs/data/polyu}
    [[ -d $shared/train/CBSD432 ]] || { echo "error: no $shared/train/CBSD432" >&2; exit 2; }
    [[ -f $polyu/_manifest.json ]] || {
        echo "error: $polyu is not an ingested set; run: denoise ingest $shared/real/PolyU $polyu --val-fraction 0.2 --seed 0" >&2
        exit 2
    }
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
    rm -rf .gpu && mkdir -p .gpu/clean .gpu/pairs .gpu/val .gpu/whl
    cp "$shared"/train/CBSD432/* .gpu/clean/
    PYTHONPATH=$PWD "$PYTHON" - "$polyu" "$shared/real/PolyU" .gpu/pairs <<'EOF'
import shutil, sys
import pyarrow.parquet as pq
from denoise_core import manifest
polyu, source, out = sys.argv[1:]
keys = [k for f in manifest.split_files(polyu, "train") for k in pq.read_table(f, columns=["key"]).column("key").to_pylist()]
for key in keys:  # PolyU's *_real.JPG; its ground truth is *_mean.JPG
    shutil.copy(f"{source}/{key}", out)
    shutil.copy(f"{source}/{key.replace('_real', '_mean')}", out)
print(f"{len(keys)} PolyU train pairs")
EOF
    "$PYTHON" - "$shared/real/SIDD/scene0001" .gpu/pairs-sidd <<'EOF'
import pathlib, sys
from PIL import Image
source, out = map(pathlib.Path, sys.argv[1:])
for image in sorted(source.glob("*/*")):  # noisy/NAME and clean/NAME
    (out / image.parent.name).mkdir(parents=True, exist_ok=True)
    Image.open(image).save(out / image.parent.name / f"{image.stem}.webp", lossless=True, quality=100, method=6)
print(f"{len(list(source.glob('noisy/*')))} SIDD scene0001 pairs")
EOF
    local val=("$shared"/val/Kodak24/*)  # globs expand sorted
    cp "${val[@]:0:6}" .gpu/val/
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .gpu/whl "${DEVICE_WHEELS[@]}"
    du -sh .gpu .gpu/*
}

train_args() {  # TIER -> the jobs.train_jax options of that tier's recipe
    case $1 in
    default) echo "--init-from default --batch 128 --lr 1e-4" ;;
    fast) echo "--init-from fast --teacher default --teacher-weight 0.5 --batch 128 --lr 5e-4" ;;
    *) echo "error: TIER must be default or fast, got '$1'" >&2; exit 2 ;;
    esac
}

train() {
    local tier=${1:?TIER} minutes=${2:?MINUTES}
    shift 2
    local args
    args=$(train_args "$tier")
    local site=/tmp/site-$tier  # one per tier: `both` installs twice at once
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .gpu/whl/*.whl
    # TF_CPP_MIN_LOG_LEVEL=2: XLA's autotuner warns "Delay kernel timed out" at each compile
    export PYTHONPATH=$site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
    local run=/tmp/lent-gpu-$tier status=0
    recipe() {  # the tier's run into a fresh $run; extra options last (they win)
        rm -rf "$run"
        # shellcheck disable=SC2086  # the recipe's options are words
        "$PYTHON" -m jobs.train_jax $args $DATA_ARGS --minutes "$minutes" --out "$run" "$@"
    }
    recipe "$@" || status=$?
    if ((status == NONFINITE_EXIT)); then  # bf16 output not finite there: once more in fp32
        echo "lent_gpu: non-finite bf16 validation; rerunning $tier in fp32" >&2
        recipe "$@" --precision fp32
    elif ((status != 0)); then
        exit "$status"
    fi
    mkdir -p "${OUT:?OUT is where the device returns files}/$tier"
    cp "$run"/model/model.keras "$run"/model/model_card.json "$run"/log.jsonl "$OUT/$tier/"
}

both() {
    local minutes=${1:?MINUTES} workers=$((($(nproc) - 2) / 2)) fast=0 default=0
    ((workers > 0)) || workers=1
    shift
    export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}  # 2 processes
    mkdir -p "${OUT:?OUT is where the device returns files}"
    (train fast "$minutes" --host-workers "$workers" "$@") >"$OUT/fast.log" 2>&1 &
    local fast_pid=$!
    (train default "$minutes" --host-workers "$workers" "$@") >"$OUT/default.log" 2>&1 || default=$?
    wait "$fast_pid" || fast=$?
    for tier in fast default; do grep -v '^{' "$OUT/$tier.log" | tail -n 3; done
    echo "lent_gpu: fast status $fast, default status $default"
    ((fast == 0 && default == 0))
}

smoke() {
    export KERAS_BACKEND=jax PYTHONPATH=$PWD
    for tier in default fast; do
        local args
        args=$(train_args "$tier")
        # fp32: XLA:CPU's bf16 forward pass of the fast tier is NaN on 128 px images
        # shellcheck disable=SC2086
        "$PYTHON" -m jobs.train_jax $args $DATA_ARGS --batch 4 --patch 32 --minutes 0.05 \
            --host-workers 1 --precision fp32 --out "$(mktemp -d)/run"
    done
}

case ${1:-} in
prepare) shift; prepare "$@" ;;
train) shift; train "$@" ;;
both) shift; both "$@" ;;
smoke) smoke ;;
*) sed -n '2,/^set -e/{/^#/p}' "$0"; exit 2 ;;
esac
