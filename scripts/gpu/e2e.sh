#!/usr/bin/env bash
# GPU end-to-end check of r3-plugin on verl 0.9.1 + vLLM (device side). NOT YET RUN ON A GPU.
# Run from the repository root on the GPU machine, after the kit (../shared/gpu/README.md) put
# verl, vLLM and ray into /tmp/site. One stage per device call (each fits the 10-minute limit):
#   bash scripts/gpu/e2e.sh r3      +recipe=r3_countdown on countdown, 3 steps        -> $OUT/r3.log
#   bash scripts/gpu/e2e.sh toy     the same on r3_toy_parity, token-level dump      -> $OUT/toy.log, $OUT/toy_dump/
#   bash scripts/gpu/e2e.sh base    single-turn GRPO on the same countdown prompts   -> $OUT/base.log
#   bash scripts/gpu/e2e.sh tools   r3 mine / r3 evaluate --backend vllm + raw vLLM  -> $OUT/tools.log, $OUT/tools/
# Every stage first runs `prepare` (idempotent: install, tiny model, data), so any stage can come first.
# Then, on any machine: python3 scripts/gpu/report.py --logs <folder with the returned files>
set -euo pipefail
stage=${1:?usage: e2e.sh prepare|r3|toy|base|tools}
repo=$(pwd)
export PYTHONPATH=/tmp/site RAY_DEDUP_LOGS=0 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/e2e-out}; mkdir -p "$OUT"
MODEL=${TINY_MODEL:-/tmp/tiny-qwen}
DATA=/tmp/e2e-data
STEPS=${E2E_STEPS:-3}
LIMIT_S=${E2E_LIMIT_S:-540}   # leave time for the logs to come back inside a 600 s call

prepare() {
  if [[ ! -f /tmp/site/.r3-e2e-installed ]]; then
    # As a user installs it: entry points (verl.plugins, Hydra search path) registered by the install,
    # no PYTHONPATH entry for the plugin or the toy task. `python3 -m r3_plugin` stands in for the `r3`
    # script because pip --target does not replace the kit's existing bin/ folder.
    python3 -m pip install -q --no-deps --no-index --no-build-isolation --target /tmp/site . tests/toy_task_pkg 2>&1 \
      | grep -v "already exists" || true
    python3 - <<'PY'
from importlib.metadata import entry_points
names = {e.name: e.value for e in entry_points(group="verl.plugins")}
assert names.get("r3") == "r3_plugin.plugin" and names.get("r3_toy") == "r3_toy_task", names
import hydra_plugins.r3_plugin  # noqa: F401  (the +recipe search path)
import verl  # noqa: F401  (loads the plugins)
from r3_plugin.policy.tasks import get_task
assert get_task("r3_toy_parity")
print("plugin installed:", names)
PY
    touch /tmp/site/.r3-e2e-installed
  fi
  if [[ ! -f $MODEL/config.json ]]; then
    [[ -f .gpu/run/make_tiny.py ]] || { echo "carry .gpu/run (the kit's make_tiny.py) with this call" >&2; exit 2; }
    (cd /tmp && TINY_MODEL=$MODEL python3 "$repo/.gpu/run/make_tiny.py")
  fi
  if [[ ! -f $DATA/single_turn/test.parquet ]]; then
    python3 -m r3_plugin data countdown --max-rows 640 --test-size 128 --output-dir $DATA/countdown --no-progress
    python3 scripts/gpu/prepare_data.py $DATA
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" || true
}

train() {  # train STAGE [extra overrides]: main_ppo with the overrides of scripts/gpu/overrides.py
  local name=$1; shift
  mapfile -t args < <(python3 scripts/gpu/overrides.py "$name" --model "$MODEL" --data-root $DATA --steps "$STEPS" \
    --dump-dir "/tmp/e2e-dump-$name")
  printf '%s\n' "python3 -m verl.trainer.main_ppo" "${args[@]}" "$@" > "$OUT/$name.cmd"
  rm -rf "/tmp/e2e-run-$name" "/tmp/e2e-dump-$name" && mkdir -p "/tmp/e2e-run-$name"
  local start=$SECONDS rc=0
  (cd "/tmp/e2e-run-$name" && timeout "$LIMIT_S" python3 -m verl.trainer.main_ppo "${args[@]}" "$@") > "$OUT/$name.log" 2>&1 || rc=$?
  echo "stage $name: exit $rc after $((SECONDS - start)) s" | tee -a "$OUT/$name.log"
  grep -E "step:[0-9]+ - " "$OUT/$name.log" | sed -E 's/ - /\n    /g' | grep -E "^step:|timing_s/(step|gen)|response_length/mean|r3/|critic/(score|advantages)" || true
  grep -E "Traceback|Error|refused" "$OUT/$name.log" | tail -5 || true
  return 0
}

prepare
case $stage in
  prepare) ;;
  r3) train r3 ;;
  base) train base ;;
  toy)
    train toy
    mkdir -p "$OUT/toy_dump" && cp -r /tmp/e2e-dump-toy/. "$OUT/toy_dump/" 2>/dev/null || true
    find "$OUT/toy_dump" -name "*.jsonl" -exec gzip -f {} \; ;;
  tools)
    mkdir -p "$OUT/tools"
    {
      t0=$SECONDS
      python3 -m r3_plugin mine --backend vllm --model "$MODEL" --data $DATA/countdown/train.parquet --limit 64 \
        --samples 8 --max-tokens 256 --gpu-memory-utilization 0.5 --output "$OUT/tools/failures.parquet" --no-progress --restart
      echo "r3 mine: wall $((SECONDS - t0)) s (includes model load)"
      t0=$SECONDS
      python3 -m r3_plugin evaluate run --backend vllm --model "$MODEL" --data $DATA/countdown/test.parquet --limit 64 \
        --max-tokens 256 --gpu-memory-utilization 0.5 --output-dir "$OUT/tools/eval" --no-progress --restart
      echo "r3 evaluate: wall $((SECONDS - t0)) s (includes model load)"
      python3 benchmarks/bench_vllm_backends.py --model "$MODEL" --data $DATA/countdown/train.parquet --rows 64 \
        --samples 8 --max-tokens 256 --out "$OUT/tools/throughput.json"
    } > "$OUT/tools.log" 2>&1 || echo "tools stage failed, see tools.log" | tee -a "$OUT/tools.log"
    grep -vE "^(INFO|DEBUG|WARNING)" "$OUT/tools.log" | tail -40 ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
