"""Free vs constrained steps (`agent.format`) on the real small models, on the same test tasks.

For SmolLM2-135M-Instruct and Gemma 3 270M, on llama.cpp (the wheels' GGUF files) and on MLX (the
same files converted by `t3edge convert from-gguf`): the share of steps that parse, CodeExec,
final-answer rate, AnsAcc and decode tokens/s of the agent, free (the baseline) then constrained,
and the ratio of decode speeds. Then the raw decode speed with and without the step grammar on one
prompt (median of `--rounds`), which separates the grammar's cost from what the model writes.

    python bench/format.py                                  # 20 tasks, both models, both engines
    python bench/format.py --engines gguf --tasks 40
    python bench/format.py --adapter-gguf runs/flywheel/adapter.gguf --models smollm2-135m
    python bench/format.py --engines gguf --decode-only --rounds 7   # the grammar's cost alone

MLX runs with a system OpenBLAS preloaded when one is installed (as the `t3edge` command does), on
the folder dequantized and held in float32: on a CPU, MLX's quantized and float16 kernels are
several times slower than its BLAS float32 path (16 vs 240 prefill tokens/s for SmolLM2 here),
and this benchmark is about the grammar, not the kernels.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from real_models import agent_figures  # noqa: E402 (the bench folder is not a package)

from t3edge.backends.base import Backend, GenerationConfig, Message  # noqa: E402

FORMATS = ("free", "constrained")


def preload_fast_blas() -> None:
    """Re-execute this script with a system OpenBLAS preloaded (MLX's bundled one is ~60x slower)."""
    from t3edge.blas import MARKER, bundled_blas, preloaded, system_blas

    fast = system_blas()
    if MARKER in os.environ or bundled_blas() is None or preloaded() or fast is None:
        return
    env = {**os.environ, MARKER: "1", "LD_PRELOAD": str(fast)}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def load(model: str, engine: str, work: Path, adapter: str | None) -> Backend:
    """The model on `engine`: its GGUF on llama.cpp, or its `from-gguf` MLX folder."""
    from converters.from_gguf import convert_from_gguf
    from t3edge.loading import load_backend
    from t3edge.models import load_models_config, pull, resolve_model

    cfg = load_models_config()
    pull(model, cfg, "gguf")
    gguf = resolve_model(model, cfg, "gguf").path
    if engine == "gguf":
        return load_backend(model, backend="gguf", adapter=adapter)
    folder = work / f"{model}-mlx"
    if not folder.is_dir():
        convert_from_gguf(Path(str(gguf)), folder, dequantize=True)
    backend = load_backend(str(folder), adapter=adapter)
    import mlx.core as mx

    backend.model.set_dtype(mx.float32)  # type: ignore[attr-defined]  (MLX's CPU kernels: BLAS for f32 only)
    return backend


def decode_speed(backend: Backend, n_tokens: int, rounds: int) -> dict[str, float]:
    """Decode tokens/s on one agent-like prompt, free and with the step grammar (median of rounds,
    interleaved so both see the same machine load)."""
    from t3edge.agent.prompt import system_prompt
    from t3edge.protocol import STOP_STRINGS, task_message
    from t3edge.tools import default_tools

    messages = [Message("system", system_prompt(default_tools(), [], style="compact", vision=False)),
                Message("user", task_message("What is the total of the amount column?", ["sales.csv"]))]
    speeds: dict[str, list[float]] = {f: [] for f in FORMATS}
    for _ in range(rounds):
        for fmt in FORMATS:
            backend.reset()
            config = GenerationConfig(max_tokens=n_tokens, stop=list(STOP_STRINGS),
                                      grammar="step" if fmt == "constrained" else None)
            speeds[fmt].append(backend.generate(messages, config).usage.tokens_per_second)
    return {f: statistics.median(v) for f, v in speeds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--engines", nargs="+", choices=["gguf", "mlx"], default=["gguf", "mlx"])
    parser.add_argument("--tasks", type=int, default=20, help="test tasks per model and engine (>= 20)")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the raw decode timing")
    parser.add_argument("--adapter-gguf", default=None, help="a GGUF LoRA for llama.cpp (one model only)")
    parser.add_argument("--adapter-mlx", default=None, help="the same LoRA as an MLX adapter folder")
    parser.add_argument("--decode-only", action="store_true", help="only the raw decode speed (no agent runs)")
    args = parser.parse_args()
    if "mlx" in args.engines:
        preload_fast_blas()

    from t3edge.tasks import make_tasks

    rows: list[tuple[str, str, str, dict[str, float]]] = []
    speeds: list[tuple[str, str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tasks = work / "tasks"
        make_tasks(tasks, "test", args.tasks, 0)
        for model in args.models:
            for engine in args.engines:
                adapter = args.adapter_gguf if engine == "gguf" else args.adapter_mlx
                backend = load(model, engine, work, adapter)
                for fmt in () if args.decode_only else FORMATS:
                    figures = agent_figures(backend, tasks, args.tasks, args.max_steps, args.max_tokens, fmt)
                    rows.append((model, engine, fmt, figures))
                    print(f"{model} {engine} {fmt}: {figures}", flush=True)
                speeds.append((model, engine, decode_speed(backend, 96, args.rounds)))
                backend.close()

    print(f"\nagents on {args.tasks} built-in test tasks, {args.max_steps} steps of up to {args.max_tokens} "
          f"tokens{' with the given adapter' if args.adapter_gguf or args.adapter_mlx else ', untuned'}")
    print(f"{'model':14s} {'engine':6s} {'format':11s} {'parse':>6s} {'CodeExec':>8s} {'final ans':>9s} "
          f"{'AnsAcc':>6s} {'decode tok/s':>12s}")
    for model, engine, fmt, r in rows:
        print(f"{model:14s} {engine:6s} {fmt:11s} {r['well_formed']:5.1f}% {r['code_exec']:7.1f}% "
              f"{r['final_answer']:8.1f}% {r['answer_acc']:5.1f}% {r['gen_tps']:12.1f}")
    print("\nraw decode speed on one agent prompt, 96 tokens (median of rounds; free is the baseline)")
    for model, engine, s in speeds:
        print(f"{model:14s} {engine:6s} free {s['free']:6.1f} tok/s, constrained {s['constrained']:6.1f} tok/s, "
              f"ratio constrained/free {s['constrained'] / s['free']:.3f}")


if __name__ == "__main__":
    main()
