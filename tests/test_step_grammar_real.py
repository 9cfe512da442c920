"""Constrained steps on the real SmolLM2-135M-Instruct: on llama.cpp (greedy and sampled), on MLX
through its `from-gguf` folder, and through llama_cpp.server with the GBNF spelling."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_servers import llama_server

from t3edge.agent import Agent, load_agent_config
from t3edge.loading import load_backend
from t3edge.backends.base import Backend, GenerationConfig, Message
from t3edge.protocol import END_ACTION, task_message
from t3edge.step_grammar import CODE_HEAD, CODE_TAIL, is_step
from t3edge.trajectory import Step

pytestmark = [pytest.mark.real, pytest.mark.slow]

MAX_TOKENS = 200


def constrained_steps(backend: Backend, tmp_path: Path, n_steps: int, **generation: float) -> list[Step]:
    """Agent runs on built-in test tasks until `n_steps` model calls were made."""
    from t3edge.tasks import load_tasks, make_tasks

    make_tasks(tmp_path / "tasks", "test", 6, 3)
    records, _ = load_tasks(tmp_path / "tasks")
    config = load_agent_config({"max_steps": 2, "max_errors": 3, "format": "constrained",
                                "generation.max_tokens": MAX_TOKENS,
                                **{f"generation.{k}": v for k, v in generation.items()}})
    steps: list[Step] = []
    for record in records:
        traj = Agent(backend, config=config, workspace=tmp_path / record.id).run_to_end(record.task(tmp_path / "tasks"))
        assert traj.format == "constrained"
        steps += traj.steps
        if len(steps) >= n_steps:
            break
    return steps


def is_step_start(text: str) -> bool:
    """Whether `text` is a step cut short: what the grammar forces next completes it."""
    if CODE_HEAD not in text:
        return is_step(text + CODE_HEAD + "pass" + CODE_TAIL)
    return is_step(text.rstrip("`") + CODE_TAIL)


@pytest.mark.parametrize("sampling", [{}, {"temperature": 0.8, "seed": 7}], ids=["greedy", "sampled"])
def test_ten_constrained_steps_of_smollm2_all_parse(smollm2_gguf: Path, tmp_path: Path,
                                                     sampling: dict[str, float]) -> None:
    backend = load_backend(str(smollm2_gguf))
    try:
        steps = constrained_steps(backend, tmp_path, 10, **sampling)
    finally:
        backend.close()
    assert len(steps) >= 10
    assert [s.kind for s in steps if s.kind == "parse_error"] == []
    # a finished step is a whole step; one cut by max_tokens is the start of one
    assert all(is_step(s.raw_output) if s.tokens_out < MAX_TOKENS else is_step_start(s.raw_output) for s in steps), \
        [s.raw_output for s in steps]
    followups = [s for s in steps if s.index > 0]
    assert followups and all(s.tokens_cached > 0 for s in followups)  # KV prefix reuse under the grammar


def _first_step(backend: Backend, grammar: str | None = "step") -> str:
    from t3edge.agent.prompt import system_prompt
    from t3edge.tools import default_tools

    messages = [Message("system", system_prompt(default_tools(), [], style="compact", vision=False)),
                Message("user", task_message("What is the total of the 'amount' column?", ["sales.csv"]))]
    done = backend.generate(messages, GenerationConfig(max_tokens=MAX_TOKENS, stop=[END_ACTION], grammar=grammar))
    assert done.grammar == grammar
    return done.text + (END_ACTION if done.stop_string == END_ACTION else "")


def test_a_constrained_step_on_mlx_from_the_converted_folder(smollm2_gguf: Path, tmp_path: Path) -> None:
    from converters.from_gguf import convert_from_gguf

    convert_from_gguf(smollm2_gguf, tmp_path / "smollm2-mlx")
    backend = load_backend(str(tmp_path / "smollm2-mlx"))
    assert backend.name == "mlx" and backend.can_constrain()
    assert is_step(_first_step(backend))


def test_llama_cpp_server_enforces_the_gbnf_grammar(smollm2_gguf: Path, tmp_path: Path) -> None:
    with llama_server(["--model", str(smollm2_gguf), "--n_ctx", "4096"], tmp_path / "server.log") as url:
        backend = load_backend(url)
        free = _first_step(backend, None)
        constrained = _first_step(backend)
    assert is_step(constrained + END_ACTION) and backend.grammar_accepted is True  # the server cuts its stop string
    assert not is_step(free)  # what this model writes unconstrained (see docs/agent.md)
