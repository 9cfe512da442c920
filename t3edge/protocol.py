"""The text protocol of code-as-action (docs/agent.md, "The protocol"): messages the agent sends, and a
tolerant parser for what models write back.

Pure string functions with no dependencies, shared by the agent loop, the trajectory schema,
training-sample rendering and synthesis, so that the formats cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

END_ACTION = "<end_action>"
STOP_STRINGS = [END_ACTION, "Observation:"]

EMPTY_PRINT_REMINDER = (
    "No observation was printed. Use print() to show the values you need in the next step."
)
RETRY_INSTRUCTION = (
    "Now let's retry: take care not to repeat previous errors! "
    "If you have retried several times, try a completely different approach."
)
FINAL_ANSWER_REQUEST = (
    "You have reached the maximum number of steps. Based on everything above, give your final "
    "answer now: write a Code block that calls final_answer(...)."
)


TEXT_ONLY_NOTE = ("You cannot see images: read an attached image with the tools by its path "
                  "(ocr for its text, facedetection for faces, image_edit to change it).")


def task_message(query: str, attachments: Sequence[str] = (), images_hidden: bool = False) -> str:
    """`Task: <query>` plus an `Attachment: a; b` line when files are attached; with
    `images_hidden` (a text-only model and attached images), a note that the images are only paths."""
    text = f"Task: {query}"
    if attachments:
        text += "\nAttachment: " + "; ".join(str(a) for a in attachments)
    if images_hidden:
        text += "\n" + TEXT_ONLY_NOTE
    return text


def observation_message(step: int, printed: str) -> str:
    printed = printed if printed.strip() else EMPTY_PRINT_REMINDER
    return f"[OUTPUT OF STEP {step}] -> Observation:\n{printed.rstrip()}"


def error_message(step: int, error: str) -> str:
    return f"[OUTPUT OF STEP {step}] -> Error:\n{error.rstrip()}\n{RETRY_INSTRUCTION}"


_FEEDBACK = re.compile(r"^\[OUTPUT OF STEP (\d+)\] -> (Observation|Error):\n?(.*)\Z", re.S)


def with_final_answer_request(feedback: str | None) -> str:
    """The last feedback of a run that hit its step limit, followed by the final-answer request.

    Folded into the same user message so that turns keep alternating and the conversation a
    trajectory renders is exactly the one the model saw.
    """
    return f"{feedback}\n\n{FINAL_ANSWER_REQUEST}" if feedback else FINAL_ANSWER_REQUEST


def parse_feedback(text: str) -> tuple[str | None, str | None]:
    """Split a feedback message into (observation, error); unknown text counts as observation."""
    if text.endswith(FINAL_ANSWER_REQUEST):
        text = text[: -len(FINAL_ANSWER_REQUEST)].rstrip("\n")
    m = _FEEDBACK.match(text)
    if not m:
        return text, None
    body = m.group(3)
    if m.group(2) == "Observation":
        return body, None
    if body.endswith(RETRY_INSTRUCTION):
        body = body[: -len(RETRY_INSTRUCTION)].rstrip("\n")
    return None, body


@dataclass
class ParsedOutput:
    """What a model's step output contained. `problem` is set when no code could be run."""

    thought: str | None
    code: str | None
    problem: str | None = None  # "empty" | "no_code"
    notes: list[str] = field(default_factory=list)  # quirks that were recovered from


_FENCE = re.compile(r"```[ \t]*(?:py|python|python3|Python)?[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)
_THOUGHT = re.compile(r"^\s*Thought\s*:\s*", re.I)
_CODE_LABEL = re.compile(r"^\s*Code\s*:\s*$", re.I | re.M)


def strip_stop_tail(text: str, stops: Sequence[str] = STOP_STRINGS) -> tuple[str, bool]:
    """Remove a stop string, or a partial one left at the very end of the text."""
    stripped = False
    for stop in stops:
        pos = text.find(stop)
        if pos != -1:
            text, stripped = text[:pos], True
    tail = text.rstrip()
    for stop in stops:
        for k in range(len(stop) - 1, 2, -1):
            if tail.endswith(stop[:k]):
                return tail[: -k], True
    return text, stripped


def parse_model_output(text: str, stops: Sequence[str] = STOP_STRINGS) -> ParsedOutput:
    """Parse `Thought: ... Code: ```py ... ```<end_action>` tolerantly.

    Accepts ```py, ```python and bare fences, an unclosed last fence, a missing `<end_action>`,
    a partial stop string at the end, unfenced code after `Code:`, and several code blocks
    (run in order, joined). The text is cut at the first of `stops`: a step decoded by the step
    grammar ends only at `<end_action>`, so its code may print "Observation:".
    """
    notes: list[str] = []
    if END_ACTION not in text:
        notes.append("missing_end_action")
    body, cut = strip_stop_tail(text, stops)
    if cut and END_ACTION not in text and "Observation:" not in text:
        notes.append("partial_stop_string")
    if not body.strip():
        return ParsedOutput(thought=None, code=None, problem="empty", notes=notes)

    blocks = [b.strip("\n") for b in _FENCE.findall(body)]
    blocks = [b for b in blocks if b.strip()]
    first_fence = body.find("```")
    label = _CODE_LABEL.search(body)
    thought_end = min(x for x in (first_fence if first_fence != -1 else len(body),
                                  label.start() if label else len(body)))
    thought = _THOUGHT.sub("", body[:thought_end]).strip() or None

    if blocks:
        if len(blocks) > 1:
            notes.append("multiple_blocks")
        if re.search(r"```[ \t]*\n", body) and not re.search(r"```[ \t]*(py|python)", body):
            notes.append("bare_fence")
        if body.count("```") % 2 == 1:
            notes.append("unclosed_fence")
        return ParsedOutput(thought=thought, code="\n\n".join(blocks), notes=notes)

    if label:
        candidate = body[label.end():].strip("\n")
        if candidate.strip() and _compiles(candidate):
            notes.append("unfenced_code")
            return ParsedOutput(thought=thought, code=candidate, notes=notes)
    return ParsedOutput(thought=thought or body.strip(), code=None, problem="no_code", notes=notes)


def _compiles(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


PARSE_ERROR_MESSAGES = {
    "empty": "Your output was empty. Write a 'Thought:' and then a 'Code:' block.",
    "no_code": (
        "Your output had no code block. Always answer with 'Thought: ...' then 'Code:' and a "
        "block that starts with ```py and ends with ```<end_action>. To finish, call "
        "final_answer(...) inside such a block."
    ),
}


def same_code(a: str, b: str) -> bool:
    """Whether two code blocks are the same program up to blank lines and indentation-free spacing."""
    return _code_key(a) == _code_key(b)


def _code_key(code: str) -> str:
    return "\n".join(" ".join(line.split()) for line in code.splitlines() if line.strip())


def repeat_message(earlier_step: int) -> str:
    return (f"This code is the same as the code of step {earlier_step}, so it was not run again: its "
            "output would be the same. Do something different: print a value you have not seen yet, "
            "or call final_answer(...) with what you know.")


def format_step(thought: str, code: str) -> str:
    """Render a step the way the protocol spells it (used by examples and training data)."""
    return f"Thought: {thought}\nCode:\n```py\n{code.rstrip()}\n```{END_ACTION}"
