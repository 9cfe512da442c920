"""The step grammar (constrained decoding of the Thought/Code format): what it accepts, its two
spellings agree, the OpenAI backend sends it and falls back when a server refuses it, the agent
records the format it used, and a bad `agent.format` setting is a clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from t3edge.agent import Agent, AgentConfig, load_agent_config
from t3edge.agent.events import Notice, RunFinished
from t3edge.agent.prompt import _examples
from t3edge.loading import load_backend
from t3edge.backends.base import GenerationConfig, Message
from t3edge.backends.constrain import Vocabulary, llama_vocabulary
from t3edge.errors import BackendError, T3Error
from t3edge.protocol import END_ACTION, STOP_STRINGS, format_step, parse_model_output
from t3edge.scripted_server import Fault, ScriptedOpenAIServer
from t3edge.step_grammar import STEP_GBNF, is_step
from t3edge.trajectory import Task

GOOD = [
    format_step("I sum the column.", "import pandas as pd\nprint(pd.read_csv('a.csv')['x'].sum())"),
    format_step("A thought: with a colon.", "print('Observation: a `tick` and ``two``')"),
    format_step("", "final_answer(3)"),
    "Thought: x\nCode:\n```py\n\n  final_answer('a')\n```<end_action>",
]
BAD = [
    "Thought: x\nCode:\n```python\nprint(1)\n```<end_action>",  # another fence tag
    "Thought: x\n```py\nprint(1)\n```<end_action>",  # no Code: label
    "Thought: a `tick`\nCode:\n```py\nprint(1)\n```<end_action>",  # backtick in the thought
    "Thought: two\nlines\nCode:\n```py\nprint(1)\n```<end_action>",  # a thought of two lines
    "Thought: x\nCode:\nprint(1)\nCode:\n```py\nprint(1)\n```<end_action>",  # code outside the fence
    "Thought: x\nCode:\n```py\n\n```<end_action>",  # no code
    "Thought: x\nCode:\n```py\nprint('```')\n```<end_action>",  # a fence inside the code
    "Thought: x\nCode:\n```py\nprint(1)\n```",  # no <end_action>
    "Code:\n```py\nprint(1)\n```<end_action>",  # no thought label
    "Thought: " + "a" * 700 + "\nCode:\n```py\nprint(1)\n```<end_action>",  # a rambling thought
]


def test_the_regex_accepts_steps_and_rejects_what_is_not_one() -> None:
    assert all(is_step(text) for text in GOOD)
    assert not any(is_step(text) for text in BAD)


def test_every_shipped_example_step_is_a_step() -> None:
    steps = [format_step(thought, code) for _query, example in _examples() for thought, code, _obs in example]
    assert len(steps) >= 5 and all(is_step(s) for s in steps)


def test_every_reference_step_of_every_family_is_a_step(tmp_path: Path) -> None:
    from t3edge.tasks import FAMILIES, make_tasks, reference_outputs

    records = [*make_tasks(tmp_path / "train", "train", len(FAMILIES), 0, verify=False),
               *make_tasks(tmp_path / "test", "test", len(FAMILIES), 1, verify=False)]
    steps = [s for r in records for s in reference_outputs(r)]
    assert {r.family for r in records} == set(FAMILIES)
    assert steps and all(is_step(s) for s in steps), [s for s in steps if not is_step(s)][:2]


@pytest.fixture(scope="module")
def smollm2_vocab(smollm2_gguf: Path) -> Any:
    """SmolLM2's real vocabulary (the GGUF loaded for its vocabulary only)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(smollm2_gguf), vocab_only=True, verbose=False)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def smollm2_constraints(smollm2_vocab: Any) -> Vocabulary:
    import llama_cpp

    return llama_vocabulary(llama_cpp.llama_model_get_vocab(smollm2_vocab.model), smollm2_vocab.n_vocab())


def _regex_accepts(llm: Any, vocabulary: Vocabulary, text: str) -> bool:
    """The backends' own constraint (llguidance) fed the text's tokens, each checked against the
    mask first."""
    constraint = vocabulary.constraint("step")
    try:
        for token in llm.tokenize(text.encode(), add_bos=False, special=False):
            if not constraint.allowed()[token]:
                return False
            constraint.accept(token)
    except BackendError:
        return False
    return constraint.finished


def _gbnf_accepts(llm: Any, text: str) -> bool:
    """llama.cpp's own grammar sampler, as a server runs it: each token of the text must survive
    the grammar's mask, then the end of generation must."""
    import ctypes

    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, STEP_GBNF.encode(), b"root")
    assert sampler, "llama.cpp rejected the grammar"

    def allowed(token: int) -> bool:
        data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        array = llama_cpp.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        return data[0].logit != float("-inf")

    try:
        for token in llm.tokenize(text.encode(), add_bos=False, special=False):
            if not allowed(token):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return allowed(llama_cpp.llama_vocab_eos(vocab))
    finally:
        llama_cpp.llama_sampler_free(sampler)


def test_the_gbnf_and_the_regex_agree_on_a_real_vocabulary(smollm2_vocab: Any,
                                                            smollm2_constraints: Vocabulary) -> None:
    """Each spelling run by the engine that reads it, over SmolLM2's tokens: the same verdicts."""
    for text in GOOD:
        assert _regex_accepts(smollm2_vocab, smollm2_constraints, text), text
        assert _gbnf_accepts(smollm2_vocab, text), text
    for text in BAD:
        assert not _regex_accepts(smollm2_vocab, smollm2_constraints, text), text
        assert not _gbnf_accepts(smollm2_vocab, text), text


def test_llama_cpp_compiles_the_gbnf() -> None:
    from llama_cpp import LlamaGrammar

    assert LlamaGrammar.from_string(STEP_GBNF, verbose=False) is not None


def test_a_constrained_step_keeps_observation_in_its_code() -> None:
    step = format_step("I print.", 'print("Observation: 3")')
    assert parse_model_output(step, [END_ACTION]).code == 'print("Observation: 3")'
    assert parse_model_output(step, STOP_STRINGS).code != 'print("Observation: 3")'  # free: a stop string


def test_a_bad_format_setting_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(T3Error, match=r"agent\.format.*'free' or 'constrained'"):
        load_agent_config({"format": "json"})
    config = tmp_path / "agent.toml"
    config.write_text('format = "grammar"\n')
    with pytest.raises(T3Error, match=f"agent.format.*{config}"):
        load_agent_config(file=config)
    from t3edge.cli import cli

    result = CliRunner().invoke(cli, ["run", "hi", "--format", "json", "--model", "replay:x"])
    assert result.exit_code == 2 and "'free'" in result.output and "'constrained'" in result.output


def _step_reply(request: dict[str, Any]) -> str | Fault:
    return Fault(status=400) if "grammar" in request else format_step("I answer.", "final_answer(7)")


def test_the_openai_backend_sends_the_gbnf_and_reports_it_enforced() -> None:
    with ScriptedOpenAIServer(lambda _req: format_step("ok", "final_answer(1)")) as server:
        backend = load_backend(server.url)
        done = backend.generate([Message("user", "hi")], GenerationConfig(grammar="step", stop=[END_ACTION]))
        assert server.requests[-1]["grammar"] == STEP_GBNF
        assert done.grammar == "step" and backend.grammar_accepted is True
        backend.generate([Message("user", "hi")], GenerationConfig(stop=[END_ACTION]))
        assert "grammar" not in server.requests[-1]


def test_a_server_that_refuses_the_grammar_is_asked_again_without_it_and_the_run_says_so(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(_step_reply) as server:
        backend = load_backend(server.url)
        agent = Agent(backend, config=AgentConfig(workspace=tmp_path))
        events = list(agent.run(Task(id="t", query="seven?")))
        traj = next(e.trajectory for e in events if isinstance(e, RunFinished))
        assert traj.final_answer == 7 and traj.format == "free"
        notices = [e.text for e in events if isinstance(e, Notice)]
        assert len(notices) == 1 and "free" in notices[0]
        assert backend.grammar_accepted is False and not backend.can_constrain()
        sent = [("grammar" in r) for r in server.requests]
        assert sent == [True, False]  # asked once with it, then never again
        again = Agent(backend, config=AgentConfig(workspace=tmp_path / "2")).run_to_end(Task(id="u", query="7?"))
        assert again.format == "free" and len(server.requests) == 3


def test_a_backend_that_cannot_constrain_runs_free_and_says_so_once(tmp_path: Path) -> None:
    script = tmp_path / "script.jsonl"
    script.write_text(json.dumps(format_step("a", "print(1)")) + "\n" + json.dumps(format_step("b", "final_answer(2)")) + "\n")
    events = list(Agent(load_backend(f"replay:{script}"), config=AgentConfig(workspace=tmp_path / "w"))
                  .run(Task(id="t", query="q")))
    assert sum(isinstance(e, Notice) for e in events) == 1
    assert next(e.trajectory for e in events if isinstance(e, RunFinished)).format == "free"
    free = list(Agent(load_backend(f"replay:{script}"), config=AgentConfig(workspace=tmp_path / "v", format="free"))
                .run(Task(id="t", query="q")))
    assert not any(isinstance(e, Notice) for e in free)


def test_the_mlx_vlm_backend_decodes_under_the_grammar(tiny_qwen2_vl: Path, test_image: Path) -> None:
    """A random-weight VLM writes nothing sensible, but under the grammar it writes the step's
    forced start and then thought text (no backtick, no line break) before its budget runs out."""
    from t3edge.backends.base import ImagePart, TextPart

    backend = load_backend(str(tiny_qwen2_vl))
    assert backend.can_constrain()
    messages = [Message("user", [ImagePart(test_image), TextPart("What is this?")])]
    for seed in (0, 1):
        done = backend.generate(messages, GenerationConfig(max_tokens=16, temperature=1.0, seed=seed,
                                                          grammar="step"))
        assert done.grammar == "step" and done.usage.generated_tokens == 16
        assert done.text.startswith("Thought: ")
        assert "`" not in done.text and "\n" not in done.text
    free = backend.generate(messages, GenerationConfig(max_tokens=16, temperature=1.0, seed=0))
    assert free.grammar is None and not free.text.startswith("Thought: ")
