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
"""Evidence that R3 learns: a small countdown model trained here from scratch, then improved by R3.

``corpus`` writes synthetic R3 conversations (attempt, reflection, retry) labelled by the real
countdown verifier; ``tokenizer`` trains a small ChatML tokenizer on them; ``sft`` trains a small
Qwen2 from scratch on the corpus; ``pipeline`` runs SFT, evaluation, R3 through verl's trainer and
the comparison on CPU in one command; ``reflections`` counts which reflections the model writes and
how often the retry after each passes (docs/evidence.md). scripts/gpu/evidence.md runs the pipeline
on one GPU.
"""
