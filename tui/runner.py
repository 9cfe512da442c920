"""The thread side of the app: loading a model and running the agent, reported as Textual messages.

Both run in Textual thread workers so the interface never waits on a model. The agent's own event
stream is forwarded as it comes; nothing here re-implements the loop.
"""

from __future__ import annotations

import threading
import traceback
from typing import TYPE_CHECKING, Any

from textual.message import Message
from textual.message_pump import MessagePump

from t3edge.backends import Backend
from t3edge.loading import load_backend
from t3edge.errors import T3Error
from t3edge.models import BackendKind
from t3edge.trajectory import Task

if TYPE_CHECKING:  # the agent package (with its tools) is imported off the start-up path
    from t3edge.agent.approval import Decision, Proposal
    from t3edge.agent.events import AgentEvent
    from t3edge.chat import Chat


class ModelLoaded(Message):
    def __init__(self, spec: str, backend: Backend) -> None:
        super().__init__()
        self.spec = spec
        self.backend = backend


class ModelFailed(Message):
    def __init__(self, spec: str, error: str) -> None:
        super().__init__()
        self.spec = spec
        self.error = error


class AgentEventMessage(Message):
    def __init__(self, event: AgentEvent) -> None:
        super().__init__()
        self.event = event


class ApprovalRequested(Message):
    """The agent waits for the user's decision on a code block; `answer` hands it back."""

    def __init__(self, proposal: Proposal) -> None:
        super().__init__()
        self.proposal = proposal
        self.decision: Decision | None = None
        self.answered = threading.Event()

    def answer(self, decision: Decision) -> None:
        self.decision = decision
        self.answered.set()


def app_approver(target: MessagePump, cancel: threading.Event) -> Any:
    """An approver that asks in the app (the agent's thread waits; a cancelled run rejects)."""
    from t3edge.agent.approval import Decision

    def decide(proposal: Proposal) -> Decision:
        request = ApprovalRequested(proposal)
        target.post_message(request)
        while not request.answered.wait(0.1):
            if cancel.is_set():
                return Decision("reject", reason="the user stopped the run")
        assert request.decision is not None
        return request.decision

    return decide


class RunCrashed(Message):
    """The run stopped with an exception instead of a RunFinished event."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


def describe(exc: BaseException) -> str:
    """One readable line for a user-facing error; the type and last frame for anything else."""
    if isinstance(exc, T3Error):
        return str(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {frame.filename}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def load_model(target: MessagePump, spec: str, kind: BackendKind | None, adapter: str | None) -> None:
    """Load a backend and post ModelLoaded or ModelFailed to `target`."""
    try:
        import t3edge.agent  # noqa: F401 - loads the agent and its tools now, not on the first message

        backend = load_backend(spec, backend=kind, adapter=adapter)
    except Exception as exc:  # noqa: BLE001 - any failure to load is shown; the app stays usable
        target.post_message(ModelFailed(spec, describe(exc)))
        return
    target.post_message(ModelLoaded(spec, backend))


def run_agent(target: MessagePump, chat: Chat, task: Task, cancel: threading.Event) -> None:
    """Run `task` in `chat` (which saves it), posting each event; an exception becomes RunCrashed."""
    try:
        for event in chat.run(task, cancel):
            target.post_message(AgentEventMessage(event))
    except Exception as exc:  # noqa: BLE001 - a crashing backend or tool must not take the app down
        target.post_message(RunCrashed(describe(exc)))
