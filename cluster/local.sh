#!/usr/bin/env bash
# A Ray cluster on this machine for sidd-denoise: one head node plus, if wanted, extra
# worker nodes (each a separate raylet, as on a real cluster), all with token auth.
#
#   cluster/local.sh start-head [--num-cpus N] [--num-gpus N]
#   cluster/local.sh add-worker [N] [--num-cpus N] [--num-gpus N]
#   cluster/local.sh status
#   cluster/local.sh stop [--force]
#   cluster/local.sh env          # print the exports a client shell needs
#
# Settings (environment): RAY_HEAD_IP (default 127.0.0.1; set a LAN address to let other
# machines join), RAY_GCS_PORT (6379), RAY_DASHBOARD_PORT (8265), RAY_CLIENT_PORT (10001),
# RAY_WORKER_CPUS (CPUs per extra worker node, default 1), RAY_OBJECT_STORE_BYTES (per
# node; default Ray's 30% of memory, which several local nodes share), RAY_LOCAL_TEMP_DIR
# (root temp dir; extra workers get RAY_LOCAL_TEMP_DIR/worker-K), RAY (the ray executable;
# default .venv/bin/ray of this checkout, else ray on PATH), LOCAL_SH_DRY_RUN=1 (print the
# ray commands, one per line, instead of running them; the tests use it).
#
# Token authentication: RAY_AUTH_MODE defaults to "token" here. start-head creates
# ~/.ray/auth_token when it is missing (`ray get-auth-token --generate`); every node
# started by this script and every client on this machine reads it from there.
# RAY_AUTH_MODE=disabled turns authentication off (only on a machine nobody else reaches).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"

HEAD_IP="${RAY_HEAD_IP:-127.0.0.1}"
GCS_PORT="${RAY_GCS_PORT:-6379}"
DASHBOARD_PORT="${RAY_DASHBOARD_PORT:-8265}"
CLIENT_PORT="${RAY_CLIENT_PORT:-10001}"
WORKER_CPUS="${RAY_WORKER_CPUS:-1}"
OBJECT_STORE_BYTES="${RAY_OBJECT_STORE_BYTES:-}"
LOCAL_TEMP_DIR="${RAY_LOCAL_TEMP_DIR:-}"
DRY_RUN="${LOCAL_SH_DRY_RUN:-}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"

if [[ -n "${RAY:-}" ]]; then
    RAY_BIN="$RAY"
elif [[ -x "$REPO/.venv/bin/ray" ]]; then
    RAY_BIN="$REPO/.venv/bin/ray"
else
    RAY_BIN="ray"
fi

usage() {
    cat <<EOF
usage: $(basename "$0") COMMAND [OPTIONS]

Commands:
  start-head [--num-cpus N] [--num-gpus N]
                 start the head node (GCS ${HEAD_IP}:${GCS_PORT}, dashboard and job
                 server http://${HEAD_IP}:${DASHBOARD_PORT}) and print the client exports
  add-worker [N] [--num-cpus N] [--num-gpus N]
                 start N more worker nodes on this machine (default 1) that join the head,
                 each with --num-cpus (default RAY_WORKER_CPUS=${WORKER_CPUS})
  status         ray status of the running cluster and the jobs it knows
  stop [--force] stop every Ray node this user runs on this machine (ray stop)
  env            print the exports a client shell needs (RAY_ADDRESS, RAY_AUTH_MODE)
  help           this message

Then, from the repository root:
  ray job submit --working-dir . -- python -m jobs.train --data DATA --storage RUN
  ray job logs --follow JOB_ID
See cluster/README.md.
EOF
}

die() {
    echo "error: $*" >&2
    exit 2
}

need_int() {  # need_int NAME VALUE: a non-negative integer or exit
    [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a non-negative integer, got '$2'"
}

check_ray() {
    [[ -n "$DRY_RUN" ]] && return 0
    command -v "$RAY_BIN" >/dev/null 2>&1 || [[ -x "$RAY_BIN" ]] \
        || die "no ray executable ('$RAY_BIN'); run 'make test' once or set RAY=/path/to/ray"
}

run_ray() {  # run_ray ARGS...: ray ARGS, or print it (shell-quoted) under LOCAL_SH_DRY_RUN
    if [[ -n "$DRY_RUN" ]]; then
        printf 'ray'
        printf ' %q' "$@"
        printf '\n'
    else
        "$RAY_BIN" "$@"
    fi
}

ensure_token() {
    if [[ "$RAY_AUTH_MODE" == "token" ]]; then
        # Creates ~/.ray/auth_token when missing; prints the token, which we drop.
        if [[ -n "$DRY_RUN" ]]; then
            run_ray get-auth-token --generate
        else
            "$RAY_BIN" get-auth-token --generate >/dev/null
        fi
    fi
}

print_env() {
    cat <<EOF
# For 'ray job submit|logs|list|stop' and the dashboard:
export RAY_ADDRESS=http://${HEAD_IP}:${DASHBOARD_PORT}
export RAY_AUTH_MODE=${RAY_AUTH_MODE}
EOF
    if [[ "$RAY_AUTH_MODE" == "token" ]]; then
        cat <<EOF
# The token is in ~/.ray/auth_token. A client on another machine needs the same file
# (or RAY_AUTH_TOKEN): copy the output of '${RAY_BIN} get-auth-token' there.
EOF
    fi
    cat <<EOF
# Running a job module directly on this machine instead (no job server):
#   python -m jobs.train --address ${HEAD_IP}:${GCS_PORT} ...
EOF
}

# Parse "--num-cpus N --num-gpus N" into the array RES_ARGS.
RES_ARGS=()
parse_resources() {
    RES_ARGS=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --num-cpus | --num-gpus)
                [[ $# -ge 2 ]] || die "$1 needs a value"
                need_int "$1" "$2"
                RES_ARGS+=("$1=$2")
                shift 2
                ;;
            --num-cpus=* | --num-gpus=*)
                need_int "${1%%=*}" "${1#*=}"
                RES_ARGS+=("$1")
                shift
                ;;
            *) die "unknown option '$1' (see '$(basename "$0") help')" ;;
        esac
    done
}

common_args() {  # common_args TEMP_SUBDIR: options every node gets, one per line
    printf '%s\n' "--node-ip-address=${HEAD_IP}" "--disable-usage-stats"
    if [[ -n "$OBJECT_STORE_BYTES" ]]; then
        printf '%s\n' "--object-store-memory=${OBJECT_STORE_BYTES}"
    fi
    if [[ -n "$LOCAL_TEMP_DIR" ]]; then
        printf '%s\n' "--temp-dir=${LOCAL_TEMP_DIR}${1:+/$1}"
    fi
}

cmd_start_head() {
    parse_resources "$@"
    check_ray
    ensure_token
    local -a args
    mapfile -t args < <(common_args "")
    run_ray start --head \
        --port="$GCS_PORT" \
        --dashboard-host="$HEAD_IP" \
        --dashboard-port="$DASHBOARD_PORT" \
        --ray-client-server-port="$CLIENT_PORT" \
        "${args[@]}" "${RES_ARGS[@]}"
    echo
    echo "Ray head: GCS ${HEAD_IP}:${GCS_PORT}, dashboard http://${HEAD_IP}:${DASHBOARD_PORT}"
    print_env
}

cmd_add_worker() {
    local count=1
    if [[ $# -gt 0 && "$1" != -* ]]; then
        need_int "N" "$1"
        count="$1"
        shift
    fi
    [[ "$count" -ge 1 ]] || die "N must be at least 1"
    parse_resources "$@"
    local has_cpus=0 arg
    for arg in "${RES_ARGS[@]}"; do
        [[ "$arg" == --num-cpus=* ]] && has_cpus=1
    done
    if [[ "$has_cpus" -eq 0 ]]; then
        need_int RAY_WORKER_CPUS "$WORKER_CPUS"
        RES_ARGS+=("--num-cpus=${WORKER_CPUS}")
    fi
    check_ray
    local i stamp
    stamp="$(date +%s)"
    for ((i = 1; i <= count; i++)); do
        local -a args
        mapfile -t args < <(common_args "worker-${stamp}-${i}")
        echo "starting worker node ${i}/${count} (${RES_ARGS[*]})" >&2
        # Several nodes share this host: the dashboard agent takes a free port (0) rather
        # than the head's 52365, and only the head runs a log monitor (one per host).
        run_ray start \
            --address="${HEAD_IP}:${GCS_PORT}" \
            --dashboard-agent-listen-port=0 \
            --include-log-monitor=false \
            "${args[@]}" "${RES_ARGS[@]}"
    done
}

cmd_status() {
    [[ $# -eq 0 ]] || die "status takes no options"
    check_ray
    run_ray status --address="${HEAD_IP}:${GCS_PORT}"
    echo
    RAY_ADDRESS="http://${HEAD_IP}:${DASHBOARD_PORT}" run_ray job list || true
}

cmd_stop() {
    local -a extra=()
    case "${1:-}" in
        "") ;;
        --force) extra=(--force) ;;
        *) die "stop takes only --force" ;;
    esac
    check_ray
    run_ray stop "${extra[@]}"
}

main() {
    local cmd="${1:-help}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        start-head) cmd_start_head "$@" ;;
        add-worker) cmd_add_worker "$@" ;;
        status) cmd_status "$@" ;;
        stop) cmd_stop "$@" ;;
        env) print_env ;;
        help | -h | --help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
