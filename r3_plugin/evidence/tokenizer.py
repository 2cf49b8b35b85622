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
"""A small ChatML tokenizer for countdown, trained on the evidence corpus itself.

Digits are split one per token by default (as Qwen2 does), so the model reads and writes any number
with ten symbols instead of memorising a token per number; for small number ranges the digits can
instead merge into one token per frequent number (``split_digits=False``), which a small model copies
from the prompt far sooner. The rest is byte-level BPE, so any text the model or a user writes still
encodes. The ChatML special tokens and template are the ones of
:mod:`r3_plugin.local.tiny_model`, so verl picks its Qwen continuous-token builder and vLLM stops on
``<|im_end|>``. The role names of the template are part of the training text, so each is one token.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any

from r3_plugin.local.tiny_model import SPECIAL_TOKENS, train_chatml_tokenizer

DEFAULT_VOCAB_SIZE = 1024
#: The template's role lines, which the corpus's message texts never contain: without them every turn
#: spends about six tokens spelling "assistant".
_ROLE_TEXTS = ("system\n", "user\n", "assistant\n") * 1000


def build_countdown_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, *, split_digits: bool = True):
    """Train a byte-level BPE tokenizer on ``texts``; returns a PreTrainedTokenizerFast.

    ``split_digits`` (default) gives every digit its own token; False lets BPE merge a number with
    the space before it (``" 12"`` one token), so the frequent numbers of a small-range corpus are
    one token each: a from-scratch model then copies a given number as one token.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} (bytes + specials), got {vocab_size}"
        )
    return train_chatml_tokenizer(chain(texts, _ROLE_TEXTS), vocab_size, split_digits=split_digits)


def as_served(tokenizer: Any) -> Any:
    """``tokenizer`` as transformers loads it back from a Qwen2 model directory, which is what vLLM,
    verl and ``r3 evaluate`` use.

    transformers 5 forces its ``Qwen2Tokenizer`` on any ``model_type: qwen2`` directory, whatever
    ``tokenizer_config.json`` names: it keeps the vocabulary and merges but replaces the
    pre-tokenizer with Qwen2's (digits one by one, Qwen2's split regex). A model trained on the
    in-memory tokenizer then sees other ids at inference (merged numbers never occur, "<think>"
    splits differently). Training on the tokenizer returned here keeps training and serving equal.
    """
    import json
    import tempfile
    from pathlib import Path

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="r3-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
        return AutoTokenizer.from_pretrained(tmp)
