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
"""Patch 4: ``docs/algo/r3.md``.

The prose is written here; the configuration table is generated from the fields of the plugin's
``R3Config`` and ``EpisodeConfig`` and the defaults of the example config, and every field must
have a description below, so a new config key cannot ship undocumented. :data:`RESULTS` says what
the project has measured; update it (and regenerate) when there are new measurements.
"""

from __future__ import annotations

import ast

from r3_plugin.upstream import config, layout
from r3_plugin.upstream.transform import TransformError, find_node, top_level

#: Descriptions of the ``r3.*`` keys (R3Config and EpisodeConfig fields).
FIELD_DOCS = {
    "mode": "`online`: every sample makes its own first attempt. `offline`: the row's "
    "`extra_info.r3_failed_attempt` is the first attempt, so a whole GRPO group reflects on one failure.",
    "credit": "`reflection` (the paper): only reflection tokens are trained. `reflection_and_retry`: "
    "the retry answer is trained too (an ablation).",
    "max_reflections": "Reflect-and-retry rounds after a failed attempt (the paper uses 1; 0 only attempts).",
    "reflect": "`false` retries without a reflection (the evaluation control).",
    "attempt_max_tokens": "Token limit of the first attempt (`null`: the episode budget).",
    "reflection_max_tokens": "Token limit of each reflection.",
    "retry_max_tokens": "Token limit of each retry.",
    "reflection_prompt": "User message asking for a reflection (`null`: the task's registered prompt).",
    "retry_prompt": "User message after the reflection (`null`: the task's; empty: retry straight away).",
    "plain_retry_prompt": "User message of the no-reflection control (`null`: the task's).",
}

#: What the project has measured. Do not put numbers here that no run produced.
RESULTS = """\
Measured so far (r3-plugin, the code this page describes): CPU correctness only.

- The CPU tests added with this page run the `r3_agent` loop through verl's real `AgentLoopWorker`,
  postprocessing, GRPO advantage and policy loss, with a tiny randomly initialised Qwen2-style
  model built at test time. They check that the token stream equals the chat template of the whole
  conversation, that exactly the reflection tokens carry `response_mask` 1 (and so the only
  non-zero policy-gradient entries), the rewards of each episode outcome, offline mode, multiple
  rounds, truncation, aborted requests and the weight-version fields the trainer reads.
- The countdown scorer is tested against adversarial answers (exponentiation, deep nesting, huge
  literals, code) and on response-only strings.

No GPU training run of this code has been measured yet, so there are no accuracy numbers of its
own to report. For orientation only, the paper reports for Qwen2.5-1.5B-Instruct on Countdown
(15k test problems) first-try / second-try accuracy of 6.0% / 10.2% before training and
34.9% / 45.0% after R3 training."""

PAGE = """\
# Reflect, Retry, Reward (R3)

R3 ([Bensal et al., 2025, arXiv:2505.24726](https://arxiv.org/abs/2505.24726)) trains a model to
write useful self-reflections. The model attempts a task whose answers can be checked; when the
verifier rejects the attempt, the model is asked to reflect on what went wrong and then retries with
its reflection in context. If the retry passes, the reflection is rewarded. Only the reflection
tokens receive policy gradient, so the model learns to reflect well, not to memorise answers;
the paper reports that first-try accuracy improves as well.

In verl, R3 is the `r3_agent` agent loop (`{pkg}`), trained with GRPO.

## The episode

1. **Attempt.** The model answers the task prompt. The task's verifier checks the answer.
2. **Success:** the episode ends; there is nothing to reflect on. In training such sessions are
   dropped, so they neither enter the GRPO group baseline nor form mini-batches whose mask is all
   zero; so are episodes that ran out of token budget before their retry was verified.
3. **Failure:** a fixed user message asks for a reflection, and the model writes one.
4. **Retry.** A second user message asks the model to try again; the model answers.
5. **Reward.** 1 if the retry passes the verifier, else 0 (training). In validation the reward is
   1 when the task was solved within the episode, the paper's second-try accuracy.

The loop builds the whole conversation with verl's continuous-token helpers
(`ct_build_initial_tokens`, `ct_merge_assistant_token`, `ct_merge_context_msg`), so the trajectory
is exactly the chat template of the conversation and generated tokens are never re-encoded. All
turns of an episode reuse one request id, so the server's prefix cache serves the retry.

## Masking

`response_mask` is 1 only on tokens the model generated in a credited turn:

| segment | `response_mask` |
|---|---|
| task prompt | (prompt, not in the response) |
| first attempt | 0 |
| reflection request (user message, template tokens) | 0 |
| **reflection** | **1** |
| retry request | 0 |
| retry answer | 0 (1 with `r3.credit=reflection_and_retry`) |
| end-of-turn token inserted after a truncated turn | 0 |

verl's GRPO multiplies the advantages by `response_mask`, and the policy, entropy and KL losses
aggregate over it, so masked tokens get no gradient and do not count in the token-mean denominator.
The rollout log-probs stay aligned with every token of the response.

## Quickstart

```bash
python3 examples/data_preprocess/countdown.py --local_save_dir ~/data/countdown
bash examples/r3_trainer/run_qwen2_5_1.5b_countdown.sh
```

The config `{example_config}` follows the paper: learning rate {lr} ({sched} schedule,
warmup ratio {warmup}), KL loss coefficient {kl}, and {traj} trajectories per step
(`data.train_batch_size={batch}` prompts x `actor_rollout_ref.rollout.n={n}`). Any row can opt in with
`agent_name: r3_agent`; `actor_rollout_ref.rollout.agent.default_agent_loop=r3_agent` makes it the
default. verl does not tell an agent loop whether it is validating; the loop recognises validation
by its sampling parameters, so keep `actor_rollout_ref.rollout.val_kwargs` (greedy in the example)
different from the training sampling parameters.

## Configuration

The loop reads the top-level `r3` block of the trainer config (`+r3.<key>=...` on the command line
when the config has no such block).

| key | default | meaning |
|---|---|---|
{table}

## Tasks and scoring

A row's task is looked up by its `data_source` in `{pkg}.tasks`. Countdown is built in: its
verifier is `verl.utils.reward_score.countdown`, which `default_compute_score` also uses for the
`data_source` values {names}. The scorer reads the last `<answer>...</answer>` of the *response*
(it does not need the prompt in the text, unlike the TinyZero port), accepts `+ - * /` and
parentheses with each given number used exactly once, and evaluates with exact rational arithmetic
in a hand-written parser: nothing the model writes is evaluated as code, and length, nesting and
literal-size limits bound the work on adversarial answers.

Other verifiable tasks plug in with one call in a module that every verl process imports:

```python
from {pkg} import VerifyResult, register_task

def my_verifier(response: str, ground_truth, extra_info=None) -> VerifyResult:
    ok = response.strip().endswith(str(ground_truth))
    return VerifyResult(ok, "correct" if ok else "wrong_answer")

register_task("my_dataset", my_verifier, reflection_prompt="You got it wrong. Reflect on what went wrong.")
```

Each trajectory carries `reward_extra_info` with `acc`, `first_try_acc`, `second_try_acc`,
`retry_success`, `reflection_tokens`, `end_reason` and the verifier's failure categories, which
verl logs per data source during validation.

## Results

{results}
"""


CONFIG_SRC = "r3_plugin/policy/config.py"


def _dataclass_fields(source: str, cls: str, *, where: str) -> list[tuple[str, str]]:
    _, nodes = top_level(source, where=where)
    node = find_node(nodes, cls, where=where).stmt
    fields = []
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            fields.append((stmt.target.id, ast.unparse(stmt.value)))
    return fields


def _yaml_value(value) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def config_table(sources) -> str:
    cfg = config.upstream_config(config.load_recipe(sources))
    block = cfg.get("r3") or {}
    fields = [
        (name, default)
        for name, default in _dataclass_fields(sources.read(CONFIG_SRC), "R3Config", where=CONFIG_SRC)
        if name not in config.SAMPLER_ONLY_R3_KEYS
    ]
    rows = []
    for name, default in fields:
        if name not in FIELD_DOCS:
            raise TransformError(f"r3.{name} has no description; add it to FIELD_DOCS in {__name__}")
        if name in block:
            shown = _yaml_value(block[name])
        else:
            try:
                shown = _yaml_value(ast.literal_eval(default))
            except (ValueError, SyntaxError):
                shown = f"`{default}`"
        rows.append(f"| `r3.{name}` | {shown} | {FIELD_DOCS[name]} |")
    unknown = sorted(set(block) - {name for name, _ in fields})
    if unknown:
        raise TransformError(f"{config.RECIPE_SRC}: r3 keys {unknown} are not fields of R3Config")
    return "\n".join(rows)


def page(sources) -> str:
    from r3_plugin.upstream.reward import task_registration

    cfg = config.upstream_config(config.load_recipe(sources))
    _, _, names = task_registration(sources)
    optim = cfg["actor_rollout_ref"]["actor"]["optim"]
    return PAGE.format(
        pkg=layout.AGENT_PKG,
        example_config=layout.EXAMPLE_CONFIG_PATH,
        batch=cfg["data"]["train_batch_size"],
        n=cfg["actor_rollout_ref"]["rollout"]["n"],
        traj=cfg["data"]["train_batch_size"] * cfg["actor_rollout_ref"]["rollout"]["n"],
        lr=optim["lr"],
        sched=optim["lr_scheduler_type"],
        warmup=optim["lr_warmup_steps_ratio"],
        kl=cfg["actor_rollout_ref"]["actor"]["kl_loss_coef"],
        table=config_table(sources),
        names=", ".join(f"`{n}`" for n in names),
        results=RESULTS,
    )


def files(sources) -> dict[str, str]:
    return {layout.DOCS_PATH: page(sources)}
