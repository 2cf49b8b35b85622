#!/usr/bin/env bash
# R3 evidence run on one GPU (issue 9), device side. NOT YET RUN ON A GPU.
#   bash scripts/gpu/evidence.sh sft|before|mine|rl|after   (see scripts/gpu/evidence.md)
# Everything lives in $EV (default /tmp/ev); results worth keeping are copied to $OUT.
set -euo pipefail
export PYTHONPATH=/tmp/site RAY_DEDUP_LOGS=0 TOKENIZERS_PARALLELISM=false
EV=${EV:-/tmp/ev}
SEED=${SEED:-0}
PRESET=${PRESET:-small}
SFT_STEPS=${SFT_STEPS:-3000}
RL_STEPS=${RL_STEPS:-20}
RL_LR=${RL_LR:-5e-5}
MODE=${MODE:-offline}            # offline (paper: failures dataset) | online
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
stage=${1:?usage: evidence.sh sft|before|mine|rl|after}

install() {  # the plugin as users install it (registers verl.plugins and the Hydra search path)
  python3 -m pip install -q --no-deps --no-index --no-build-isolation --target /tmp/site . >/dev/null
}

case "$stage" in
sft)
  install
  python3 -m r3_plugin.evidence.sft --output-dir "$EV" --device cuda --seed "$SEED" --preset "$PRESET" \
    --steps "$SFT_STEPS" --batch-size 64 --conversations 100000 --test-size 1000 --rl-train-size 20000 \
    --eval-size 256 --eval-every 500 --log-every 100 --no-progress 2>&1 | grep -v "Writing model shards"
  cp -r "$EV/model" "$OUT/sft-model"; cp "$EV/train_log.jsonl" "$OUT/sft-train_log.jsonl"
  ;;
before|after)
  model="$EV/model"; label=sft
  if [ "$stage" = after ]; then
    model=$(ls -d "$EV"/ckpt/global_step_*/actor/huggingface | sort -V | tail -1); label=r3
    cp -r "$model" "$OUT/rl-model"
  fi
  r3 evaluate run --model "$model" --backend vllm --data "$EV/data/test.parquet" --output-dir "$OUT/eval-$label" \
    --label "$label" --max-tokens 64 --max-model-len 1024 --gpu-memory-utilization 0.3 --seed "$SEED" --no-progress
  ;;
mine)
  r3 mine --model "$EV/model" --backend vllm --data "$EV/data/train.parquet" --output "$EV/data/failures.parquet" \
    --samples 8 --limit 4000 --max-tokens 64 --max-model-len 1024 --gpu-memory-utilization 0.3 --seed "$SEED" \
    --no-progress
  cp "$EV"/data/failures.summary.json "$OUT/" 2>/dev/null || true
  ;;
rl)
  if [ "$MODE" = offline ]; then recipe=r3_countdown_offline; train="$EV/data/failures.parquet"
  else recipe=r3_countdown; train="$EV/data/train.parquet"; fi
  cd /tmp && timeout 560 python3 -m verl.trainer.main_ppo +recipe=$recipe \
    actor_rollout_ref.model.path="$EV/model" data.train_files="$train" data.val_files="$EV/data/test.parquet" \
    data.max_prompt_length=128 data.max_response_length=320 data.train_batch_size=64 data.val_max_samples=500 \
    data.dataloader_num_workers=0 r3.attempt_max_tokens=64 r3.reflection_max_tokens=64 r3.retry_max_tokens=64 \
    r3_model_info.name=evidence-$PRESET r3_model_info.hf_id=null r3_model_info.params_billion=0.007 \
    actor_rollout_ref.model.use_remove_padding=False +actor_rollout_ref.model.override_config.attn_implementation=sdpa \
    actor_rollout_ref.model.enable_gradient_checkpointing=False actor_rollout_ref.actor.use_torch_compile=False \
    actor_rollout_ref.actor.optim.lr="$RL_LR" actor_rollout_ref.actor.ppo_mini_batch_size=64 \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=32 actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=32 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32 actor_rollout_ref.rollout.n=8 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.4 actor_rollout_ref.rollout.enforce_eager=True \
    actor_rollout_ref.rollout.agent.num_workers=4 'actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]' \
    trainer.n_gpus_per_node=1 trainer.total_training_steps="$RL_STEPS" trainer.test_freq="$RL_STEPS" \
    trainer.save_freq="$RL_STEPS" trainer.val_before_train=True trainer.default_local_dir="$EV/ckpt" \
    trainer.experiment_name=evidence-$MODE 2>&1 | tee "$OUT/rl.log" | grep -vE "^\(pid|INFO|DEBUG" | tail -80
  ;;
*) echo "unknown stage $stage" >&2; exit 2 ;;
esac
