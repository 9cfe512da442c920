"""Code approval (`agent.approve = "ask"`): each code block is shown to the user before it runs,
and the user runs it, edits it, or rejects it (docs/agent.md, "Code approval").

The agent calls an `Approver` (a plain function given by the command line or the terminal app)
from its own thread and waits for the decision. Evaluation and synthesis never pass one, so
they never ask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Action = Literal["run", "edit", "reject"]
EDITED_NOTE = "edited by the user"  # the note of the CodeParsed event that shows the edited code


@dataclass(frozen=True)
class Proposal:
    """A code block the model wants to run."""

    index: int  # the step
    thought: str | None
    code: str


@dataclass(frozen=True)
class Decision:
    """The user's answer: run the code as proposed, run `code` instead, or reject it (`reason` is
    told to the model)."""

    action: Action
    code: str | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.action == "edit" and not (self.code and self.code.strip()):
            raise ValueError("an edit needs the code to run")


Approver = Callable[[Proposal], Decision]


def rejection_message(reason: str) -> str:
    """What the model is told when the user rejects its code."""
    why = f" The user said: {reason.strip()}" if reason.strip() else ""
    return ("The user did not allow this code to run, so it was not run." + why
            + " Write different code that does what the user wants, or call final_answer(...).")
