"""The chat screen: the conversation log, attachment chips, the message box and the status line.

Each message sent is one agent run on the attached files that continues the chat: the model sees the
chat's earlier runs (`history`) before the new message. The run streams into the log step by step;
the log follows new output only while it is scrolled to the bottom.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from t3edge.agent.approval import EDITED_NOTE
from t3edge.agent.events import (
    CodeParsed,
    FinalAnswer,
    Notice,
    ObservationEvent,
    ParseFailed,
    RunFinished,
    StepError,
    StepFinished,
    StepStarted,
    TokenDelta,
)
from t3edge.errors import T3Error
from t3edge.trajectory import Trajectory, file_kind
from tui.runner import AgentEventMessage, ApprovalRequested, RunCrashed, app_approver, run_agent
from tui.screens.dialogs import Confirm
from tui.widgets.attachments import AttachmentBar
from tui.widgets.prompt import PromptInput
from tui.widgets.status import StatusLine
from tui.widgets.steps import FinalAnswerView, StepView, UserMessage
from tui.widgets.steps import Notice as NoticeLine  # a line in the chat; agent Notices are notifications

if TYPE_CHECKING:
    from t3edge.chat import Chat
    from tui.app import T3App

ENDINGS = {
    "final_answer": ("Done.", "info"),
    "step_limit": ("Stopped: the step limit was reached.", "warn"),
    "error_limit": ("Stopped: too many errors in a row.", "warn"),
    "cancelled": ("Cancelled.", "warn"),
    "backend_error": ("Stopped: the model backend failed.", "error"),
    "context_full": ("Stopped: the model's context is full. Start a new chat (ctrl+n).", "error"),
}


def ending_notice(traj: Trajectory) -> Notice:
    """How a run ended, with the backend's error when there was one."""
    text, kind = ENDINGS.get(traj.ended or "", (f"Ended: {traj.ended}", "info"))
    detail = f"  {traj.error}" if traj.error else ""
    return NoticeLine(f"{text}{detail}  {len(traj.steps)} steps · {traj.seconds:.1f}s", kind)


class ChatScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel run", id="chat.cancel")]

    app: T3App

    def __init__(self) -> None:
        super().__init__()
        self.cancel_event: threading.Event | None = None
        self.steps: dict[int, StepView] = {}
        self.warned_context = False
        self.runs_ended = 0
        self.history: list[Trajectory] = []  # the chat's finished runs, each continuing the ones before
        self.chat_run: Chat | None = None  # the Chat of the last message sent

    def compose(self) -> ComposeResult:
        yield StatusLine(warn_ratio=self.app.config.context_warn_ratio, id="status")
        yield VerticalScroll(id="log")
        yield AttachmentBar(id="attachments")
        yield PromptInput(id="prompt")
        yield Footer()

    async def on_mount(self) -> None:
        self.log_view.anchor()
        self.prompt.focus()
        await self.app.chat_ready()

    # -- parts -----------------------------------------------------------------------------------

    @property
    def log_view(self) -> VerticalScroll:
        return self.query_one("#log", VerticalScroll)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one(PromptInput)

    @property
    def status(self) -> StatusLine:
        return self.query_one(StatusLine)

    @property
    def attachments(self) -> AttachmentBar:
        return self.query_one(AttachmentBar)

    @property
    def running(self) -> bool:
        return self.cancel_event is not None

    # -- attachments -----------------------------------------------------------------------------

    def attach(self, path: Path) -> bool:
        """Add a file to the next message (an image for a text-only model goes to its tools by path)."""
        if not path.is_file():
            self.notify(f"Not a file: {path}", severity="error")
            return False
        backend = self.app.backend
        if file_kind(path) == "image" and backend is not None and not backend.supports_images:
            self.notify(
                f"{backend.model_id} is a text-only model: it will read {path.name} with its tools "
                "(ocr, facedetection), not see it. Pick a vision model (ctrl+l) to show it images.",
                timeout=8,
            )
        if not self.attachments.add(path):
            self.notify(f"{path.name} is already attached")
        return True

    @on(AttachmentBar.Changed)
    def _attachments_changed(self) -> None:
        self.prompt.focus()

    @on(PromptInput.PathsPasted)
    def _paths_pasted(self, event: PromptInput.PathsPasted) -> None:
        for path in event.paths:
            self.attach(path)

    # -- sending ---------------------------------------------------------------------------------

    @on(PromptInput.Submitted)
    def _submitted(self, event: PromptInput.Submitted) -> None:
        self.send(event.text)

    def send(self, text: str) -> None:
        query = text.strip()
        if not query:
            return
        if self.running:
            self.notify("A run is in progress: wait for it, or press Esc to cancel it.", severity="warning")
            return
        backend = self.app.backend
        if backend is None:
            self.notify(self.app.model_problem or "The model is still loading…", severity="warning")
            return
        from t3edge.chat import new_task  # the agent and its tools load off the start-up path

        try:
            task = new_task(query, self.attachments.paths)
        except T3Error as exc:
            self.notify(str(exc), severity="error")
            return
        cancel = threading.Event()
        chat = self.app.chat_for(backend, self.history, app_approver(self, cancel))
        problem = chat.problem(task)
        if problem is not None:
            self.offer_new_chat(query, problem)
            return
        self.prompt.clear()
        self.attachments.clear()
        self.steps = {}
        self.warned_context = False
        self.log_view.mount(UserMessage(task.query, task.attachments))
        self.log_view.anchor()
        self.cancel_event = cancel
        self.status.state = "running"
        self.chat_run = chat
        self.run_worker(
            lambda: run_agent(self, chat, task, cancel),
            thread=True, group="agent",
            name="agent-run", exit_on_error=False,
        )

    def offer_new_chat(self, query: str, problem: str, attachments: list[Path] | None = None) -> None:
        """The message cannot continue this chat: offer to send it in a new chat instead (with
        `attachments` attached again when the message had already been taken from the box)."""

        async def answered(yes: bool | None) -> None:
            if yes:
                await self.app.action_new_chat()
                for path in attachments or []:
                    if path not in self.attachments.paths:
                        self.attach(path)
                self.send(query)
            else:
                self.notify("Start a new chat (ctrl+n) to go on with a fresh context.", severity="warning")

        self.app.push_screen(
            Confirm(f"This chat cannot go on: {problem}.\n"
                    "Start a new chat with this message (the model will not see the earlier ones)?"),
            answered,
        )

    def action_cancel(self) -> None:
        if self.cancel_event is not None and not self.cancel_event.is_set():
            self.cancel_event.set()
            self.status.state = "cancelling…"

    # -- the event stream ------------------------------------------------------------------------

    @on(ApprovalRequested)
    def _approve(self, request: ApprovalRequested) -> None:
        from tui.screens.dialogs import ApproveCode

        self.status.state = "waiting for your approval"
        self.app.push_screen(ApproveCode(request.proposal), callback=self._approved(request))

    def _approved(self, request: ApprovalRequested) -> Any:
        def answer(decision: Any) -> None:
            self.status.state = "running"
            request.answer(decision)

        return answer

    @on(AgentEventMessage)
    async def _agent_event(self, message: AgentEventMessage) -> None:
        event = message.event
        if isinstance(event, StepStarted):
            view = StepView(event.index, previews=self.app.config.image_previews)
            self.steps[event.index] = view
            await self.log_view.mount(view)
        elif isinstance(event, TokenDelta):
            self._step(event.index).add_delta(event.text)
        elif isinstance(event, CodeParsed):
            edited = EDITED_NOTE in event.notes  # the user's version of code shown just before
            self._step(event.index).show_code(None if edited else event.thought, event.code)
        elif isinstance(event, ParseFailed):
            self._step(event.index).show_problem(event.message)
        elif isinstance(event, ObservationEvent):
            self._step(event.index).show_observation(event.text, event.produced_files)
        elif isinstance(event, StepError):
            self._step(event.index).show_error(event.error)
        elif isinstance(event, StepFinished):
            await self._step(event.step.index).finish(event.step)
            self._track_context(event.step.tokens_in + event.step.tokens_out)
        elif isinstance(event, FinalAnswer):
            await self.log_view.mount(FinalAnswerView(event.answer))
        elif isinstance(event, Notice):
            self.notify(event.text, severity="warning", timeout=10)
        elif isinstance(event, RunFinished):
            self._finished(event.trajectory)

    def _step(self, index: int) -> StepView:
        view = self.steps.get(index)
        if view is None:  # an event for a step whose start was not seen: show it anyway
            view = StepView(index, previews=self.app.config.image_previews)
            self.steps[index] = view
            self.log_view.mount(view)
        return view

    def _track_context(self, used: int) -> None:
        self.status.context_used = used
        if self.status.near_limit and not self.warned_context:
            self.warned_context = True
            self.notify(
                f"The conversation uses {used:,} of {self.status.context_size:,} context tokens: "
                "the model may soon lose the start. Start a new chat (ctrl+n) for a new topic.",
                severity="warning", timeout=10,
            )

    def _finished(self, traj: Trajectory) -> None:
        self._end_run()
        self.log_view.mount(ending_notice(traj))
        self.history.append(traj)  # the run's Chat saved it
        if self.chat_run is not None:
            self.app.session_id = self.chat_run.chat_id
        if traj.ended == "context_full" and not traj.steps and traj.continues:
            # a follow-up that the model could not even start: offer to ask it afresh
            self.offer_new_chat(traj.task.query, traj.error or "the model's context is full",
                                [Path(a.path) for a in traj.task.attachments])

    @on(RunCrashed)
    def _crashed(self, message: RunCrashed) -> None:
        self._end_run()
        self.log_view.mount(NoticeLine(f"The run failed: {message.error}", "error"))

    def _end_run(self) -> None:
        for view in self.steps.values():
            if view.step is None:
                view.stop("cancelled" if self.cancel_event and self.cancel_event.is_set() else "stopped")
        self.cancel_event = None
        self.runs_ended += 1
        self.status.state = "ready"

    # -- showing saved runs ----------------------------------------------------------------------

    async def show_runs(self, runs: list[Trajectory], history: list[Trajectory]) -> None:
        """Replace the log with saved runs, every step included (collapsed); the next message
        continues `history` (the chat the last run ends)."""
        await self.log_view.remove_children()
        for traj in runs:
            await self.log_view.mount_all(self.app.run_widgets(traj))
        self.log_view.anchor()
        self.history = history
        steps = [step for traj in history for step in traj.steps]
        self.status.context_used = steps[-1].tokens_in + steps[-1].tokens_out if steps else 0

    async def clear(self) -> None:
        await self.log_view.remove_children()
        self.history = []
        self.status.context_used = 0
