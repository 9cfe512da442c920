"""Follow-up runs: a chat continues the conversation of its earlier runs (append-only, so the
backend's KV prefix is reused), driven by the replay backend and, once, by the tiny MLX model."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from PIL import Image

from t3edge.agent import Agent, AgentConfig
from t3edge.agent.events import RunFinished, StepStarted
from t3edge.backends.base import GenerationConfig, ImagePart, Message, TextPart
from t3edge.backends.replay import ReplayBackend
from t3edge.conversation import (
    chat_chain,
    chat_messages,
    check_chain,
    trajectory_messages,
)
from t3edge.errors import T3Error
from t3edge.protocol import format_step
from t3edge.trajectory import Attachment, Task, Trajectory

COUNT = format_step("Count the boxes.", "boxes = [1, 2, 3]\nprint(len(boxes))")
ANSWER_3 = format_step("Three.", "final_answer(3)")
SAVE = format_step("Save a note.", "open('note.txt', 'w').write('red: 2')\nprint('saved')")
ANSWER_SAVED = format_step("Saved.", "final_answer('saved')")


def _image(path: Path, color: tuple[int, int, int]) -> Path:
    Image.new("RGB", (64, 48), color).save(path)
    return path


def _agent(backend: ReplayBackend, tmp_path: Path, **cfg: object) -> Agent:
    return Agent(backend, config=AgentConfig(workspace=str(tmp_path / "workspaces"), **cfg))


def test_followup_extends_the_first_conversation_with_the_new_task(tmp_path: Path) -> None:
    first_img = _image(tmp_path / "boxes.png", (200, 30, 30))
    second_img = _image(tmp_path / "other.png", (30, 30, 200))
    backend = ReplayBackend([COUNT, SAVE, ANSWER_3,
                             format_step("Read the note and the image.",
                                         "print(open('note.txt').read(), open('boxes.png', 'rb').read(4))"),
                             format_step("Two.", "final_answer(2)")])
    agent = _agent(backend, tmp_path)
    first = agent.run_to_end(Task(id="chat-1", query="How many boxes?",
                                  attachments=[Attachment.from_path(first_img)]))
    assert first.ended == "final_answer" and first.final_answer == 3
    assert not first.continues
    last_call_of_first = backend.seen[-1]

    task = Task(id="chat-2", query="and how many of them are red?",
                attachments=[Attachment.from_path(second_img)])
    events = list(agent.run(task, history=[first]))
    assert isinstance(events[-1], RunFinished)
    second = events[-1].trajectory
    assert sum(isinstance(e, StepStarted) for e in events) == len(second.steps) == 2
    assert second.ended == "final_answer" and second.final_answer == 2
    assert second.continues == ["chat-1"]
    assert second.system_prompt == first.system_prompt
    assert second.task_message == f"Task: and how many of them are red?\nAttachment: {second_img}"
    # the follow-up works in the chat's folder: the earlier note and attachment are still there
    assert second.workspace == first.workspace
    assert second.steps[0].error is None and "red: 2" in (second.steps[0].observation or "")

    # the follow-up's first call is the whole first conversation, its answer, then the new task
    followup_call = backend.seen[len(first.steps)]
    assert followup_call[: len(last_call_of_first)] == last_call_of_first
    assert followup_call[len(last_call_of_first):] == [
        Message("assistant", first.steps[-1].raw_output),
        Message("user", [ImagePart(str(second_img)), TextPart(second.task_message)]),
    ]
    assert followup_call[:-1] == trajectory_messages(first)
    # the earlier image stays only where it was first given; calls within the follow-up extend each other
    assert [len(m.images) for m in followup_call] == [0, 1] + [0] * (len(followup_call) - 3) + [1]
    second_run_calls = backend.seen[len(first.steps):]
    for earlier, later in pairwise(second_run_calls):
        assert later[: len(earlier)] == earlier
    # the chain renders back into exactly the conversation the model saw
    assert chat_messages([first, second])[: len(backend.seen[-1])] == backend.seen[-1]
    assert second.steps[0].tokens_cached > 0
    assert Trajectory.model_validate_json(second.model_dump_json()) == second


def test_a_run_that_stopped_without_an_answer_is_continued_in_the_same_turn(tmp_path: Path) -> None:
    backend = ReplayBackend([format_step("Oops.", "print(1 / 0)"), ANSWER_3, ANSWER_3])
    agent = _agent(backend, tmp_path, max_errors=1)
    failed = agent.run_to_end(Task(id="a", query="Divide."))
    assert failed.ended == "error_limit" and failed.steps[-1].feedback
    second = agent.run_to_end(Task(id="b", query="Try again."), history=[failed])
    merged = backend.seen[1][-1]
    assert merged.role == "user" and merged.text == f"{failed.steps[-1].feedback}\n\nTask: Try again."
    assert [m.role for m in backend.seen[1]] == ["system", "user", "assistant", "user"]
    third = agent.run_to_end(Task(id="c", query="And once more."), history=[failed, second])
    assert third.continues == ["a", "b"]
    assert backend.seen[2][: len(backend.seen[1])] == backend.seen[1]
    assert chat_messages([failed, second, third]) == [*backend.seen[2], Message("assistant", ANSWER_3)]
    # a saved session's runs give back each chat's chain
    assert chat_chain([failed, second, third]) == [failed, second, third]
    assert chat_chain([failed, second, third], last=second) == [failed, second]
    assert chat_chain([failed]) == [failed]


def test_history_must_be_one_chat_in_order(tmp_path: Path) -> None:
    backend = ReplayBackend([ANSWER_3, ANSWER_3])
    agent = _agent(backend, tmp_path)
    one = agent.run_to_end(Task(id="one", query="q1"))
    two = agent.run_to_end(Task(id="two", query="q2"), history=[one])
    check_chain([one, two])
    with pytest.raises(T3Error, match="continues"):
        list(agent.run(Task(id="three", query="q3"), history=[two]))
    with pytest.raises(T3Error, match="not here"):
        chat_chain([two])
    assert backend.calls == 2


def test_a_followup_that_would_not_fit_the_context_is_refused_before_any_call(tmp_path: Path) -> None:
    backend = ReplayBackend([COUNT, ANSWER_3, ANSWER_3])
    agent = _agent(backend, tmp_path, generation=GenerationConfig(max_tokens=100))
    first = agent.run_to_end(Task(id="x", query="How many?"))
    used = first.steps[-1].tokens_in + first.steps[-1].tokens_out
    follow = Task(id="y", query="word " * 400)
    backend.context_length = used + 100 + 50
    problem = agent.followup_overflow([first], follow)
    assert problem is not None and "context" in problem
    assert agent.followup_overflow([first], Task(id="y", query="short")) is None
    Image.new("RGB", (640, 480)).save(tmp_path / "big.png")  # about 390 tokens for a Qwen2-VL policy
    big = Attachment.from_path(tmp_path / "big.png")
    assert agent.followup_overflow([first], Task(id="y", query="short", attachments=[big])) is not None
    assert agent.followup_overflow([], follow) is None
    refused = agent.run_to_end(follow, history=[first])
    assert refused.ended == "context_full" and not refused.steps and backend.calls == 2
    assert agent.followup_overflow([first, refused], Task(id="z", query="short")) is not None


@pytest.mark.slow
def test_followup_reuses_the_kv_prefix_on_the_tiny_mlx_model(tiny_qwen2_vl: Path, test_image: Path,
                                                             tmp_path: Path) -> None:
    pytest.importorskip("mlx_vlm")
    from t3edge.loading import load_backend

    backend = load_backend(str(tiny_qwen2_vl))
    backend.context_length = 16384  # the tiny model declares 4096, less than a whole chat; RoPE has no limit
    try:
        config = AgentConfig(max_steps=1, max_errors=2, workspace=str(tmp_path / "ws"),
                             generation=GenerationConfig(max_tokens=12, temperature=0.0))
        agent = Agent(backend, config=config)
        first = agent.run_to_end(Task(id="m1", query="Describe the image.",
                                      attachments=[Attachment.from_path(test_image)]))
        second = agent.run_to_end(Task(id="m2", query="And its colours?"), history=[first])
    finally:
        backend.close()
    assert first.steps and second.steps and second.continues == ["m1"], second.error
    call = second.steps[0]
    assert call.tokens_in > first.steps[-1].tokens_in  # the whole first conversation, image included
    assert call.tokens_cached > 64  # the system prompt and the 64 image tokens were not prefilled again
