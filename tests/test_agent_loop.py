"""The agent loop's logic, driven by the replay backend (scripted model outputs), with the real
sandboxed executor and tools."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image

from t3edge.agent import Agent, AgentConfig
from t3edge.agent.events import (
    CodeParsed,
    FinalAnswer,
    ObservationEvent,
    ParseFailed,
    RunFinished,
    StepError,
    StepStarted,
    TokenDelta,
)
from t3edge.backends.base import ImagePart
from t3edge.backends.replay import ReplayBackend
from t3edge.conversation import trajectory_messages
from t3edge.protocol import FINAL_ANSWER_REQUEST, PARSE_ERROR_MESSAGES, format_step
from t3edge.trajectory import Attachment, Task, Trajectory


def _run(outputs: list[str], tmp_path: Path, task: Task | None = None, **cfg: object):
    backend = ReplayBackend(outputs)
    agent = Agent(backend, config=AgentConfig(**cfg), workspace=tmp_path / "ws")
    events = list(agent.run(task or Task(id="t", query="q")))
    assert isinstance(events[-1], RunFinished)
    return events, events[-1].trajectory, backend


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    img = Image.new("RGB", (120, 80), (200, 30, 30))
    img.paste((10, 200, 10), (60, 0, 120, 80))
    path = tmp_path / "photo.png"
    img.save(path)
    return path


def test_multi_step_success_keeps_variables_and_an_append_only_conversation(tmp_path: Path, photo: Path) -> None:
    outputs = [
        format_step("Look at the size.", "from PIL import Image\nimg = Image.open('photo.png')\nw, h = img.size\nprint(w, h)"),
        format_step("Compute the area.", "area = w * h\nprint('area', area)"),
        format_step("Done.", "final_answer(area)"),
    ]
    task = Task(id="area", query="What is the area of the image?", attachments=[Attachment.from_path(photo)])
    events, traj, backend = _run(outputs, tmp_path, task)
    assert traj.ended == "final_answer" and traj.final_answer == 9600
    assert [s.observation.strip() for s in traj.steps[:2]] == ["120 80", "area 9600"]
    assert traj.steps[0].feedback == "[OUTPUT OF STEP 0] -> Observation:\n120 80"
    assert [type(e) for e in events].count(StepStarted) == 3
    assert any(isinstance(e, TokenDelta) for e in events)
    assert isinstance(events[-2], FinalAnswer) and events[-2].answer == 9600
    # images only in the first user message; each call's messages extend the previous call's
    for call in backend.seen:
        assert [m.role for m in call[:2]] == ["system", "user"]
        assert call[1].images == [ImagePart(str(photo))]
        assert all(not m.images for m in call[2:])
    for earlier, later in zip(backend.seen, backend.seen[1:]):
        assert later[: len(earlier)] == earlier
    # the trajectory renders back into exactly the conversation the model saw
    assert trajectory_messages(traj)[: len(backend.seen[-1])] == backend.seen[-1]
    assert Trajectory.model_validate_json(traj.model_dump_json()) == traj
    assert traj.steps[1].tokens_cached > 0


@pytest.mark.parametrize("answer, expected", [
    ("[1, 'two', 3.5]", [1, "two", 3.5]),
    ("{'name': 'x', 'boxes': [[1, 2, 3, 4]]}", {"name": "x", "boxes": [[1, 2, 3, 4]]}),
])
def test_final_answer_values(tmp_path: Path, answer: str, expected: object) -> None:
    _, traj, _ = _run([format_step("Answer.", f"final_answer({answer})")], tmp_path)
    assert traj.ended == "final_answer"
    assert traj.final_answer == expected and type(traj.final_answer) is type(expected)


def test_each_parse_failure_is_a_counted_step_with_a_corrective_message(tmp_path: Path) -> None:
    outputs = ["", "Thought: I think the answer is four.", format_step("Now properly.", "final_answer(1)")]
    events, traj, backend = _run(outputs, tmp_path)
    failed = [e for e in events if isinstance(e, ParseFailed)]
    assert [f.problem for f in failed] == ["empty", "no_code"]
    for index, problem in enumerate(["empty", "no_code"]):
        step = traj.steps[index]
        assert step.kind == "parse_error" and step.code is None
        assert PARSE_ERROR_MESSAGES[problem] in step.feedback and "-> Error:" in step.feedback
        assert backend.seen[index + 1][-1].text == step.feedback
    assert traj.ended == "final_answer" and traj.final_answer == 1


# what small models write, the note the parser records, and the code that must run
TOLERATED = [
    ("Thought: t\nCode:\n```python\nprint(1)\n```<end_action>", None),
    ("Thought: t\nCode:\n```\nprint(2)\n```<end_action>", "bare_fence"),
    ("Thought: t\nCode:\n```py\nprint(3)\n```", "missing_end_action"),
    ("Thought: t\nCode:\n```py\nprint(4)\n```<end_act", "partial_stop_string"),
    ("Thought: t\nCode:\n```py\nx = 2\n```\nand\n```py\nprint(x + 3)\n```<end_action>", "multiple_blocks"),
    ("Thought: t\nCode:\n```py\nprint(6)", "unclosed_fence"),
    ("Thought: t\nCode:\n```py\nprint(7)\n```\nObservation: 7", None),
]


def test_what_small_models_write_still_runs(tmp_path: Path) -> None:
    outputs = [out for out, _ in TOLERATED] + [format_step("Done.", "final_answer(0)")]
    events, traj, _ = _run(outputs, tmp_path, max_steps=len(outputs))
    parsed = [e for e in events if isinstance(e, CodeParsed)]
    for index, (_, note) in enumerate(TOLERATED):
        if note:
            assert note in parsed[index].notes
        assert "<end_act" not in parsed[index].code and "Observation" not in parsed[index].code
        step = traj.steps[index]
        assert step.kind == "action" and step.error is None
        assert step.observation.strip() == str(index + 1)
    assert traj.ended == "final_answer"


def test_error_limit_stops_the_run(tmp_path: Path) -> None:
    outputs = [format_step("Try.", "print(undefined_name)"), "no code at all",
               format_step("Again.", "1 / 0"), format_step("Unreached.", "final_answer(1)")]
    events, traj, _ = _run(outputs, tmp_path, max_errors=3)
    assert traj.ended == "error_limit" and len(traj.steps) == 3 and traj.final_answer is None
    assert "ZeroDivisionError" in traj.steps[2].error
    assert sum(isinstance(e, (StepError, ParseFailed)) for e in events) == 3


def test_step_limit_asks_once_for_a_final_answer(tmp_path: Path) -> None:
    outputs = [format_step("Step.", "x = 1\nprint(x)"), format_step("Step.", "x += 1\nprint(x)"),
               format_step("Final.", "final_answer(x * 10)")]
    _, traj, backend = _run(outputs, tmp_path, max_steps=2)
    assert traj.ended == "final_answer" and traj.final_answer == 20
    assert traj.steps[-1].kind == "final_answer_request"
    last_user = backend.seen[2][-1]
    assert last_user.role == "user" and last_user.text.endswith(FINAL_ANSWER_REQUEST)
    assert traj.steps[1].observation.strip() == "2"  # parse_feedback strips the request
    assert trajectory_messages(traj)[: len(backend.seen[-1])] == backend.seen[-1]


def test_step_limit_without_a_final_answer(tmp_path: Path) -> None:
    outputs = [format_step("Step.", "print(1)"), format_step("Still no answer.", "print(2)")]
    _, traj, backend = _run(outputs, tmp_path, max_steps=1)
    assert traj.ended == "step_limit" and traj.final_answer is None and backend.calls == 2


def test_tool_error_is_an_error_observation(tmp_path: Path) -> None:
    outputs = [format_step("Edit.", "p = image_edit(prompt='crop 0,0,10,10', image_path='missing.png')"),
               format_step("Give up.", "final_answer('none')")]
    events, traj, _ = _run(outputs, tmp_path)
    err = next(e for e in events if isinstance(e, StepError))
    assert "image_edit failed" in err.error and "missing.png" in err.error
    assert traj.steps[0].tools_called == ["image_edit"] and traj.ended == "final_answer"


def test_image_producing_tool_reports_the_new_file(tmp_path: Path, photo: Path) -> None:
    outputs = [format_step("Crop.", "p = image_edit(prompt='crop 60,0,120,80', image_path='photo.png')\nprint(p)"),
               format_step("Done.", "final_answer(p)")]
    task = Task(id="crop", query="crop", attachments=[Attachment.from_path(photo)])
    events, traj, _ = _run(outputs, tmp_path, task)
    obs = next(e for e in events if isinstance(e, ObservationEvent))
    assert len(obs.produced_files) == 1 and obs.produced_files == traj.steps[0].produced_files
    out = Path(traj.final_answer)
    assert out.parent == (tmp_path / "ws").resolve()
    with Image.open(out) as img:
        assert img.size == (60, 80) and img.getpixel((30, 40)) == (10, 200, 10)


def test_backend_failure_ends_the_run_cleanly(tmp_path: Path) -> None:
    _, traj, _ = _run([format_step("One.", "print(1)")], tmp_path)
    assert traj.ended == "backend_error" and "exhausted" in traj.error


def test_cancel_during_generation_closes_the_stream(tmp_path: Path) -> None:
    long_output = "Thought: " + " ".join(["word"] * 500) + "\nCode:\n```py\nfinal_answer(1)\n```"
    backend = ReplayBackend([long_output], delay_s=0.001)
    agent = Agent(backend, workspace=tmp_path / "ws")
    cancel = threading.Event()
    deltas = 0
    events = []
    for event in agent.run(Task(id="c", query="q"), cancel):
        events.append(event)
        if isinstance(event, TokenDelta):
            deltas += 1
            if deltas == 3:
                cancel.set()
    traj = events[-1].trajectory
    assert traj.ended == "cancelled" and traj.steps == [] and deltas == 3


def test_cancel_during_execution_stops_the_code(tmp_path: Path) -> None:
    backend = ReplayBackend([format_step("Slow.", "print(sum(range(10**12)))")])
    agent = Agent(backend, config=AgentConfig(step_timeout_s=300), workspace=tmp_path / "ws")
    cancel = threading.Event()
    events = []
    for event in agent.run(Task(id="c", query="q"), cancel):
        events.append(event)
        if isinstance(event, CodeParsed):
            threading.Timer(0.5, cancel.set).start()
    traj = events[-1].trajectory
    assert traj.ended == "cancelled"
    assert traj.steps[0].error == "Execution was cancelled."


class _CrashingBackend(ReplayBackend):
    def stream(self, messages, config):
        yield from []
        raise RuntimeError("device lost")


def test_an_unexpected_backend_failure_still_ends_with_a_trajectory(tmp_path: Path) -> None:
    agent = Agent(_CrashingBackend(["unused"]), workspace=tmp_path / "ws")
    events = list(agent.run(Task(id="t", query="q")))
    traj = events[-1].trajectory
    assert isinstance(events[-1], RunFinished)
    assert traj.ended == "backend_error" and traj.error == "RuntimeError: device lost"


def test_a_conversation_that_outgrows_the_context_ends_cleanly(tmp_path: Path) -> None:
    backend = ReplayBackend([format_step("Print a lot.", "print('word ' * 400)"), format_step("x", "final_answer(1)")])
    backend.context_length = 900
    agent = Agent(backend, config=AgentConfig(generation={"max_tokens": 256}), workspace=tmp_path / "ws")
    traj = agent.run_to_end(Task(id="t", query="q"))
    assert traj.ended == "context_full" and len(traj.steps) == 1 and backend.calls == 1
    assert "context of 900" in traj.error
