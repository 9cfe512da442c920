"""The replay backend (`--model replay:FILE`) and the protocol helpers the loop relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t3edge.loading import load_backend
from t3edge.backends.base import Completion, GenerationConfig, Message, TextDelta
from t3edge.backends.replay import ReplayBackend, read_script
from t3edge.errors import BackendError, T3Error
from t3edge.protocol import (
    FINAL_ANSWER_REQUEST,
    STOP_STRINGS,
    error_message,
    observation_message,
    parse_feedback,
    parse_model_output,
    with_final_answer_request,
)

CONFIG = GenerationConfig(max_tokens=100, stop=list(STOP_STRINGS))


def test_script_files_in_both_formats(tmp_path: Path) -> None:
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text(json.dumps("first output") + "\n\n" + json.dumps({"output": "second\nline"}) + "\n")
    assert read_script(jsonl) == ["first output", "second\nline"]
    text = tmp_path / "s.txt"
    text.write_text("one\n---\ntwo\nlines\n---\n")
    assert read_script(text) == ["one", "two\nlines"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(T3Error, match="not JSON"):
        read_script(bad)


def test_replay_spec_streams_with_stop_strings_and_then_runs_out(tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("Thought: a\nCode:\n```py\nprint(1)\n```<end_action> ignored tail\n---\nsecond")
    backend = load_backend(f"replay:{script}")
    assert isinstance(backend, ReplayBackend) and backend.name == "replay"
    items = list(backend.stream([Message("user", "hi")], CONFIG))
    completion = items[-1]
    assert isinstance(completion, Completion) and completion.stop_string == "<end_action>"
    assert "".join(i.text for i in items if isinstance(i, TextDelta)) == completion.text
    assert completion.text.endswith("```") and "ignored" not in completion.text
    assert backend.generate([Message("user", "hi")], CONFIG).text == "second"
    with pytest.raises(BackendError, match="exhausted"):
        backend.generate([Message("user", "hi")], CONFIG)


def test_feedback_round_trips_with_the_final_answer_request() -> None:
    obs = observation_message(2, "value 3\n")
    assert parse_feedback(obs) == ("value 3", None)
    assert parse_feedback(with_final_answer_request(obs)) == ("value 3", None)
    err = with_final_answer_request(error_message(4, "NameError: x"))
    assert err.endswith(FINAL_ANSWER_REQUEST) and parse_feedback(err) == (None, "NameError: x")
    assert "print()" in observation_message(0, "  ")


def test_parser_recovers_thought_only_and_unfenced_code() -> None:
    parsed = parse_model_output("Thought: look\nCode:\nx = ocr(image_path='a.png')\nprint(x)")
    assert parsed.code == "x = ocr(image_path='a.png')\nprint(x)" and "unfenced_code" in parsed.notes
    assert parse_model_output("Thought: only thinking").problem == "no_code"
    assert parse_model_output("  ").problem == "empty"
