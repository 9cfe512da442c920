"""The agent event stream (one stream for every consumer, docs/agent.md).

Running a task yields these, in order; the command line, the TUI, evaluation and synthesis all
consume the same stream and none re-implements the loop. The last event of every run is
RunFinished, carrying the Trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from t3edge.trajectory import Step, Trajectory


@dataclass
class StepStarted:
    index: int


@dataclass
class TokenDelta:
    index: int
    text: str


@dataclass
class CodeParsed:
    index: int
    thought: str | None
    code: str
    notes: list[str] = field(default_factory=list)


@dataclass
class ParseFailed:
    index: int
    problem: str
    message: str


@dataclass
class ObservationEvent:
    index: int
    text: str
    produced_files: list[str] = field(default_factory=list)


@dataclass
class StepError:
    index: int
    error: str


@dataclass
class StepFinished:
    step: Step


@dataclass
class FinalAnswer:
    answer: Any


@dataclass
class Notice:
    """Something the user should know about the run that is not a step (e.g. decoding is free)."""

    text: str


@dataclass
class RunFinished:
    trajectory: Trajectory


AgentEvent = (
    StepStarted | TokenDelta | CodeParsed | ParseFailed | ObservationEvent | StepError
    | StepFinished | FinalAnswer | Notice | RunFinished
)
