"""Backend-independent pieces: stop strings in streams, message parts."""

from __future__ import annotations

import pytest

from t3edge.backends.base import ImagePart, Message, StopScanner, TextPart


def _run(stops: list[str], pieces: list[str]) -> tuple[str, str, str | None]:
    scanner = StopScanner(stops)
    shown = ""
    for piece in pieces:
        shown += scanner.feed(piece)
        if scanner.hit:
            break
    else:
        shown += scanner.flush()
    return shown, scanner.text, scanner.hit


@pytest.mark.parametrize("pieces", [
    ["Thought: x\n```py\nprint(1)\n```<end_action>tail"],
    ["Thought: x\n```py\nprint(1)\n```<", "end_", "action>", "tail"],
    list("Thought: x\n```py\nprint(1)\n```<end_action>tail"),
])
def test_stop_string_split_across_deltas_never_leaks(pieces: list[str]) -> None:
    shown, text, hit = _run(["<end_action>", "Observation:"], pieces)
    assert shown == text == "Thought: x\n```py\nprint(1)\n```"
    assert hit == "<end_action>"


def test_partial_prefix_is_released_when_it_turns_out_harmless() -> None:
    scanner = StopScanner(["Observation:"])
    assert scanner.feed("a Obs") == "a "
    assert scanner.feed("erve the cat") == "Observe the cat"
    assert scanner.feed(" <") == " <"
    assert scanner.flush() == ""


def test_earliest_stop_wins_and_no_stops_passes_through() -> None:
    shown, _, hit = _run(["B", "A"], ["xxAyyB"])
    assert (shown, hit) == ("xx", "A")
    assert _run([], ["abc", "def"]) == ("abcdef", "abcdef", None)


def test_message_parts() -> None:
    m = Message("user", [ImagePart("a.png"), TextPart("Task: x"), TextPart("!")])
    assert m.text == "Task: x!" and [p.label for p in m.images] == ["a.png"]
    assert Message("assistant", "hi").parts == [TextPart("hi")]
