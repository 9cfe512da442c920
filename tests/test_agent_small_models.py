"""The agent's defences for small local models, driven by scripted outputs with the real sandbox:
repeated code is not rerun and a stuck run ends as `loop`; text-only models get images by path;
small contexts get the compact prompt; a model's registry sampling reaches every call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from t3edge.agent import Agent, AgentConfig
from t3edge.agent.events import StepError
from t3edge.backends.base import GenerationConfig, ImagePart
from t3edge.backends.llama import _sample
from t3edge.backends.replay import ReplayBackend
from t3edge.protocol import TEXT_ONLY_NOTE, format_step, same_code
from t3edge.trajectory import Attachment, Task

SUM = format_step("Add them.", "x = 2 + 3\nprint(x)")
SUM_AGAIN = format_step("Add them again.", "x = 2 + 3\n\n   print(x)  ")
DONE = format_step("Done.", "final_answer(x)")


def _agent(outputs: list[str], tmp_path: Path, **cfg: object) -> tuple[Agent, ReplayBackend]:
    backend = ReplayBackend(outputs)
    return Agent(backend, config=AgentConfig(**cfg), workspace=tmp_path / "ws"), backend


def test_same_code_ignores_blank_lines_and_spacing() -> None:
    assert same_code("x = 2 + 3\nprint(x)", "x = 2 + 3\n\n   print(x)  ")
    assert not same_code("print(1)", "print(2)")


def test_repeated_code_is_not_run_and_the_model_is_told(tmp_path: Path) -> None:
    agent, backend = _agent([SUM, SUM_AGAIN, DONE], tmp_path)
    events = list(agent.run(Task(id="t", query="2+3?")))
    traj = events[-1].trajectory
    assert traj.ended == "final_answer" and traj.final_answer == 5
    repeat = traj.steps[1]
    assert repeat.kind == "repeat" and repeat.observation is None and repeat.tools_called == []
    assert "same as the code of step 0" in (repeat.feedback or "")
    assert any(isinstance(e, StepError) and "not run again" in e.error for e in events)
    assert "same as the code of step 0" in backend.seen[2][-1].text  # the model saw it


def test_a_run_that_keeps_repeating_ends_as_loop(tmp_path: Path) -> None:
    agent, _ = _agent([SUM, SUM, SUM_AGAIN, DONE], tmp_path, max_repeats=2)
    traj = agent.run_to_end(Task(id="t", query="2+3?"))
    assert traj.ended == "loop" and len(traj.steps) == 3
    assert "loop" in traj.error


def test_a_text_only_model_gets_images_as_paths(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), "red").save(photo)
    agent, backend = _agent([format_step("Size.", "from PIL import Image\nprint(Image.open('photo.png').size)"), DONE],
                            tmp_path)
    backend.supports_images = False
    traj = agent.run_to_end(Task(id="t", query="How big?", attachments=[Attachment.from_path(photo)]))
    first_turn = backend.seen[0][1]
    assert not any(isinstance(p, ImagePart) for p in first_turn.parts)
    assert TEXT_ONLY_NOTE in first_turn.text and str(photo) in first_turn.text
    assert traj.steps[0].observation.strip() == "(64, 64)" and not traj.images_shown


def test_a_vision_model_still_sees_the_images(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), "red").save(photo)
    agent, backend = _agent([DONE.replace("x", "1")], tmp_path)
    traj = agent.run_to_end(Task(id="t", query="What?", attachments=[Attachment.from_path(photo)]))
    assert any(isinstance(p, ImagePart) for p in backend.seen[0][1].parts)
    assert traj.images_shown and TEXT_ONLY_NOTE not in backend.seen[0][1].text


def test_small_contexts_get_the_compact_prompt(tmp_path: Path) -> None:
    agent, backend = _agent([DONE], tmp_path)
    backend.context_length = 8192
    assert agent.prompt_style() == "compact"
    compact = agent.system_prompt()
    backend.context_length = 32768
    assert agent.prompt_style() == "full"
    full = agent.system_prompt()
    assert len(compact) < len(full) / 2
    for piece in ("Thought:", "```py", "<end_action>", "final_answer", "ocr(", "inspect_file_as_text("):
        assert piece in compact
    backend.supports_images = False
    assert "visualizer(" not in agent.system_prompt(), "a text-only model is not offered the vision tools"
    backend.context_length = 8192
    assert "visualizer(" not in agent.system_prompt() and "ocr(" in agent.system_prompt()
    forced, _ = _agent([DONE], tmp_path, prompt="full")
    assert forced.prompt_style() == "full"


def test_the_registry_sampling_reaches_the_model_calls(tmp_path: Path) -> None:
    agent_backend = ReplayBackend([DONE.replace("x", "1")])
    agent_backend.generation_overrides = {"repetition_penalty": 1.3, "temperature": 0.2}
    agent = Agent(agent_backend, config=AgentConfig(), workspace=tmp_path / "ws")
    assert agent.config.generation.repetition_penalty == 1.3 and agent.config.generation.temperature == 0.2
    assert "<end_action>" in agent.config.generation.stop  # the protocol's stops stay


def test_the_repetition_penalty_lowers_recent_tokens_only() -> None:
    logits = np.array([2.0, 1.9, -1.0, 0.5])
    config = GenerationConfig(repetition_penalty=2.0)
    rng = np.random.default_rng(0)
    assert _sample(logits.copy(), config, rng, recent=[]) == 0
    assert _sample(logits.copy(), config, rng, recent=[0]) == 1  # 2.0 / 2 < 1.9
    penalized = logits.copy()
    _sample(penalized, config, rng, recent=[0, 2])
    assert penalized[0] == 1.0 and penalized[2] == -2.0 and penalized[1] == 1.9
