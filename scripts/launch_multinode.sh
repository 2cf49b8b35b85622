#!/usr/bin/env bash
# Copyright 2026 The r3-plugin Authors
# Licensed under the Apache License, Version 2.0 (see LICENSE).
#
# Multi-node R3 training with verl on a Ray cluster. The same recipes run on 1..N nodes: only
# trainer.nnodes / trainer.n_gpus_per_node change (the batch arithmetic is checked on CPU first).
#
#   1. head node:      scripts/launch_multinode.sh head                 [--port 6379]
#   2. every worker:   scripts/launch_multinode.sh worker HEAD_IP       [--port 6379]
#   3. head node:      scripts/launch_multinode.sh train NNODES [GPUS_PER_NODE] -- +recipe=r3_countdown +r3_model=qwen2.5-7b ...
#   status / stop:     scripts/launch_multinode.sh status | stop
#
# Every node needs the same Python environment (verl + r3-plugin[vllm]), the model (or Hub access),
# and the data files at the same path. trainer.default_local_dir must be on a shared filesystem for
# checkpoints to be resumable. Environment: RAY_PORT (6379), NCCL_* / GLOO_SOCKET_IFNAME as your
# network needs, PYTHON (python).
set -euo pipefail

PYTHON="${PYTHON:-python}"
PORT="${RAY_PORT:-6379}"

usage() { sed -n '4,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

cmd="${1:-}"; [ -n "$cmd" ] || usage 2; shift || true

parse_port() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) PORT="$2"; shift 2 ;;
      *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
  done
}

case "$cmd" in
  -h|--help|help) usage 0 ;;
  head)
    parse_port "$@"
    ray start --head --port="$PORT" --dashboard-host=0.0.0.0
    echo "Ray head started. On each worker: $0 worker $(hostname -I 2>/dev/null | awk '{print $1}') --port $PORT"
    ;;
  worker)
    head_ip="${1:?usage: $0 worker HEAD_IP [--port PORT]}"; shift
    parse_port "$@"
    ray start --address="${head_ip}:${PORT}"
    ;;
  status) ray status ;;
  stop) ray stop ;;
  train)
    nnodes="${1:?usage: $0 train NNODES [GPUS_PER_NODE] -- OVERRIDES...}"; shift
    gpus=8
    if [ $# -gt 0 ] && [ "$1" != "--" ]; then gpus="$1"; shift; fi
    [ "${1:-}" = "--" ] && shift
    overrides=("$@" "trainer.nnodes=${nnodes}" "trainer.n_gpus_per_node=${gpus}")
    recipe=""; rest=()
    for o in "${overrides[@]}"; do
      case "$o" in +recipe=*) recipe="${o#+recipe=}" ;; *) rest+=("$o") ;; esac
    done
    [ -n "$recipe" ] || { echo "train: pass +recipe=NAME after --" >&2; exit 2; }
    # Fail on CPU in seconds, not after the cluster has loaded the model.
    "$PYTHON" -m r3_plugin config "$recipe" "${rest[@]}" --check
    have=$("$PYTHON" - <<'PY'
import ray
ray.init(address="auto", logging_level="ERROR")
print(int(ray.cluster_resources().get("GPU", 0)))
PY
)
    need=$((nnodes * gpus))
    if [ "$have" -lt "$need" ]; then
      echo "train: the Ray cluster has $have GPU(s), the run needs $need (${nnodes} x ${gpus}); start more workers" >&2
      exit 1
    fi
    export RAY_ADDRESS="${RAY_ADDRESS:-auto}"   # main_ppo's ray.init() joins this cluster
    exec "$PYTHON" -m verl.trainer.main_ppo "${overrides[@]}"
    ;;
  *) echo "unknown command: $cmd" >&2; usage 2 ;;
esac
