"""Small modal dialogs: ask for a line of text, confirm an action, approve a code block."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, TextArea

if TYPE_CHECKING:  # the agent package is imported off the start-up path
    from t3edge.agent.approval import Proposal


class AskText(ModalScreen[str | None]):
    """One line of text (Enter accepts, Esc cancels)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(Content(self.question))
            yield Input(value=self.value, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)


class Confirm(ModalScreen[bool]):
    """Yes or no (y / n, Esc is no)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "dismiss(True)", "Yes"),
        Binding("n,escape", "dismiss(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__(classes="dialog")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(Content(self.question))
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class ApproveCode(ModalScreen["Decision"]):
    """A code block the model wants to run (`agent.approve = "ask"`): run it (as edited in the
    box), or reject it with an optional reason the model is told (Esc rejects)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "run", "Run", priority=True),
        Binding("escape", "reject", "Reject"),
    ]

    def __init__(self, proposal: Proposal) -> None:
        super().__init__(classes="dialog")
        self.proposal = proposal

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box wide tall approve-box"):
            yield Label(Content(f"Step {self.proposal.index}: run this code? Edit it here if you like."))
            if self.proposal.thought:
                yield Label(Content(self.proposal.thought), classes="thought")
            yield TextArea(self.proposal.code, id="code", show_line_numbers=True)
            yield Input(placeholder="why not (told to the model when you reject)", id="reason")
            with Horizontal(classes="buttons"):
                yield Button("Run (ctrl+r)", id="run", variant="success")
                yield Button("Reject (esc)", id="reject", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_run() if event.button.id == "run" else self.action_reject()

    def action_run(self) -> None:
        from t3edge.agent.approval import Decision

        code = self.query_one("#code", TextArea).text
        if not code.strip():
            self.notify("The code is empty: reject it instead.", severity="warning")
            return
        self.dismiss(Decision("run") if code == self.proposal.code else Decision("edit", code=code))

    def action_reject(self) -> None:
        from t3edge.agent.approval import Decision

        self.dismiss(Decision("reject", reason=self.query_one("#reason", Input).value))
