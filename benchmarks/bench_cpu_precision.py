# Copyright 2026 The r3-plugin Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Benchmark: the actor's forward + backward on CPU in bf16 (verl's default) vs fp32.

verl's FSDP engine computes in ``param_dtype`` (bf16 unless ``fsdp_config.mixed_precision`` says
otherwise). A CPU without AVX-512 BF16 (or AMX) has no bf16 matrix units, so torch emulates it: the
``+r3_scale=cpu`` preset therefore sets fp32 for the actor and the reference. This times what that
choice changes, the training forward/backward of the embedded evidence model (a 2M-parameter
Qwen2) on R3-sized sequences, with the parameters cast the way FSDP's MixedPrecision casts them.

    python benchmarks/bench_cpu_precision.py [--batch 8] [--length 160] [--repeats 3]

Measured in verl itself (issue 15's R3 run, 128 episodes, ~30k tokens a step, 2 cores without
AVX-512): bf16 old_log_prob 27 s, ref 27 s, update_actor 98 s; fp32 3-4 s, 3 s, 9 s for half the
tokens in a 2-step check (both beside another verl run).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2"))]
    return " ".join(sorted(wanted)) or "none of avx2/avx512/amx"


def time_step(model, ids, dtype, repeats: int) -> float:
    """Median seconds of one forward + backward with the parameters in ``dtype`` (fp32 master copy)."""
    import torch

    compute = model.to(dtype)
    times = []
    for _ in range(repeats + 1):  # the first call warms up
        start = time.perf_counter()
        loss = compute(input_ids=ids, labels=ids).loss.float()
        loss.backward()
        times.append(time.perf_counter() - start)
        compute.zero_grad(set_to_none=True)
    model.to(torch.float32)
    return statistics.median(times[1:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8, help="sequences per micro-batch (the cpu scale's is 8)")
    p.add_argument("--length", type=int, default=160, help="tokens per sequence (an R3 episode is ~250)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per dtype (median)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from r3_plugin.tools.demo_trainer import embedded_model

    if args.threads:
        torch.set_num_threads(args.threads)
    path = embedded_model()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.train()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.length), generator=gen)
    tokens = args.batch * args.length
    print(f"model {path.name} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU flags: {_cpu_flags()}")
    print(f"forward + backward of {args.batch} x {args.length} tokens, median of {args.repeats}\n")
    results = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        seconds = time_step(model, ids, dtype, args.repeats)
        results[name] = seconds
        print(f"  {name}  {seconds * 1000:8.1f} ms   {tokens / seconds:9.0f} tokens/s")
    print(f"\nbf16 / fp32 time: {results['bf16'] / results['fp32']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
