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
"""Command-line options shared by ``r3 mine`` and ``r3 evaluate``, and building a backend from them."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

from r3_plugin.tools.arg_types import looks_like_path, positive_int
from r3_plugin.tools.backends.base import SamplingConfig

BACKENDS = ("hf", "vllm", "openai", "scripted")


def add_backend_arguments(parser: argparse.ArgumentParser, *, default_temperature: float) -> None:
    g = parser.add_argument_group("model and backend")
    g.add_argument(
        "--model",
        required=True,
        help="HF model id or local checkpoint directory (hf, vllm); the served model name (openai); "
        "package.module:function (scripted)",
    )
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        default="hf",
        help="vllm: offline vLLM, the fast path on GPUs; openai: an OpenAI-compatible endpoint (--base-url); "
        "hf: transformers, for CPU and small GPUs; scripted: a Python function, for tests and demos "
        "(default: %(default)s)",
    )
    g.add_argument("--base-url", help="openai backend: endpoint up to /v1, e.g. http://127.0.0.1:8000/v1")
    g.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="openai backend: environment variable holding the API key, if any (default: %(default)s)",
    )
    g.add_argument("--device", help="hf backend: torch device (default: cuda if available, else cpu)")
    g.add_argument("--dtype", default="auto", help="hf/vllm: model dtype, e.g. bfloat16 (default: %(default)s)")
    g.add_argument(
        "--max-batch-size",
        type=positive_int,
        default=None,
        help="largest batch one generate call may take (default: 32 for hf, 1024 for vllm)",
    )
    g.add_argument("--tensor-parallel-size", type=positive_int, default=1, help="vllm: GPUs per model (default: 1)")
    g.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=None,
        help="vllm: share of accelerator memory (default: 0.85); on a CPU-only machine vLLM-CPU reads it as the "
        "share of host RAM it reserves (default there: 0.1)",
    )
    g.add_argument(
        "--max-model-len",
        type=positive_int,
        help="vllm: context length cap (default: the model's; 2048 on a CPU-only machine)",
    )
    g.add_argument("--trust-remote-code", action="store_true", help="hf/vllm: allow custom model code")
    g.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (repeatable): a module that registers your own task with "
        "r3_plugin.register_task, or holds a scripted backend's function; ./MODULE.py in the current "
        "directory is found first, as with python -m",
    )
    s = parser.add_argument_group("sampling")
    s.add_argument(
        "--temperature",
        type=float,
        default=default_temperature,
        help="0 = greedy (default: %(default)s)",
    )
    s.add_argument("--top-p", type=float, default=1.0, help="(default: %(default)s)")
    s.add_argument("--top-k", type=int, default=None, help="(default: off)")
    s.add_argument("--seed", type=int, default=0, help="base seed; per-episode seeds derive from it (default: 0)")
    s.add_argument(
        "--max-tokens",
        type=positive_int,
        default=1024,
        help="default per-turn token cap (attempt, reflection, retry) (default: %(default)s)",
    )


@contextlib.contextmanager
def cwd_on_path() -> Iterator[None]:
    """Let ``--import my_tasks`` find ``./my_tasks.py``, as ``python -m`` would.

    The ``r3`` console script runs with its own bin directory as ``sys.path[0]``, not the directory
    the user runs it from, so a module next to the data would otherwise never be found. The
    directory is on the path only while the user's module is imported, so a stray ``./datasets.py``
    cannot shadow a library imported later.
    """
    cwd = os.getcwd()
    added = "" not in sys.path and cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def import_user_module(name: str, flag: str) -> Any:
    """Import a user's module (current directory first); any failure becomes one line naming ``flag``."""
    try:
        with cwd_on_path():
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.split(".")[0] == exc.name.split(".")[0]:
            raise ValueError(
                f"{flag}: no module named {exc.name!r} in the current directory ({os.getcwd()}) or the installed "
                "packages; run r3 from the directory holding it, or install it"
            ) from None
        raise ValueError(f"{flag}: importing {name} failed: {_where(exc)}ModuleNotFoundError: {exc}") from None
    except Exception as exc:  # the user's module is broken: say where, in one line
        raise ValueError(f"{flag}: importing {name} failed: {_where(exc)}{type(exc).__name__}: {exc}") from None


def _where(exc: BaseException) -> str:
    """``file:line: `` of the innermost frame of the user's code that raised (empty when unknown)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}: "
    return f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""


def import_user_modules(names: list[str]) -> None:
    """Import every ``--import`` module, or exit with one line saying which failed and why."""
    for name in names:
        try:
            import_user_module(name, f"--import {name}")
        except ValueError as exc:
            raise SystemExit(str(exc)) from None


#: Backends whose --model is a model id or a local checkpoint directory.
_MODEL_DIR_BACKENDS = ("hf", "vllm")


def check_backend_args(args: argparse.Namespace) -> None:
    """Catch a wrong --model / --base-url before anything is written (ValueError, one line).

    A path that does not exist would otherwise reach transformers, which reads it as a Hub repo id
    and fails deep inside with advice about repo ids, after the run's journal was created.
    """
    if args.backend in _MODEL_DIR_BACKENDS and looks_like_path(args.model):
        path = os.path.expanduser(args.model)
        if not os.path.exists(path):
            raise ValueError(f"--model {args.model}: no such directory")
        if not os.path.isdir(path):
            raise ValueError(f"--model {args.model}: not a directory (a checkpoint is a directory with config.json)")
    if args.backend == "openai" and not args.base_url:
        raise ValueError("--backend openai needs --base-url, e.g. http://127.0.0.1:8000/v1")
    if args.backend == "scripted":
        from r3_plugin.tools.backends.scripted import load_script

        load_script(args.model)


def sampling_from_args(args: argparse.Namespace) -> SamplingConfig:
    return SamplingConfig(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
        max_tokens=args.max_tokens,
    )


def cpu_engine_kwargs(max_model_len: int | None) -> dict[str, Any]:
    """vLLM-CPU engine settings for ``r3 mine`` / ``r3 evaluate``.

    Chunked prefill is off: vLLM-CPU 0.24 crashes ("CPU Generator does not use offset") when it
    discards a token sampled for a partly prefilled request that has its own seed, and every
    episode turn here has one (reproducible episodes). Whole-prompt prefill needs a token budget of
    at least the context length, so the context defaults to 2048 tokens here (``--max-model-len``).
    """
    context = max_model_len or 2048
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(2048, context), "max_model_len": context}


def make_backend(args: argparse.Namespace, sampling: SamplingConfig | None = None) -> Any:
    """Build the backend the CLI options name (heavy imports happen here, not at CLI start)."""
    import os

    sampling = sampling or sampling_from_args(args)
    kind = args.backend
    if kind == "hf":
        from r3_plugin.tools.backends.hf import HFBackend

        return HFBackend(
            args.model,
            sampling,
            device=args.device,
            dtype=args.dtype,
            max_batch_size=args.max_batch_size or 32,
            trust_remote_code=args.trust_remote_code,
        )
    if kind == "vllm":
        from r3_plugin.cpu import wanted as cpu_only
        from r3_plugin.tools.backends.vllm_offline import VLLMBackend

        on_cpu = cpu_only()
        memory = args.gpu_memory_utilization
        if memory is None:
            memory = 0.1 if on_cpu else 0.85
        return VLLMBackend(
            args.model,
            sampling,
            tensor_parallel_size=args.tensor_parallel_size,
            gpu_memory_utilization=memory,
            enforce_eager=on_cpu,  # vLLM-CPU: no CUDA graphs; eager also starts much faster
            engine_kwargs=cpu_engine_kwargs(args.max_model_len) if on_cpu else None,
            max_model_len=args.max_model_len,
            dtype=args.dtype,
            max_batch_size=args.max_batch_size or 1024,
            trust_remote_code=args.trust_remote_code,
        )
    if kind == "openai":
        from r3_plugin.tools.backends.openai_http import OpenAIBackend

        if not args.base_url:
            raise SystemExit("--backend openai needs --base-url, e.g. http://127.0.0.1:8000/v1")
        return OpenAIBackend(
            args.base_url,
            args.model,
            sampling,
            api_key=os.environ.get(args.api_key_env) if args.api_key_env else None,
            max_concurrency=max(1, getattr(args, "concurrency", 64)),
        )
    if kind == "scripted":
        from r3_plugin.tools.backends.scripted import ScriptedBackend, load_script

        return ScriptedBackend(load_script(args.model), default_max_tokens=sampling.max_tokens)
    raise SystemExit(f"unknown backend {kind!r}; choose from {', '.join(BACKENDS)}")
