"""How a run looks in the chat: the user's message, each agent step, the final answer, notices.

Model output is only ever shown as plain `Content` (or Markdown for thoughts, highlighted code),
never parsed as Textual/Rich markup. A running step shows the latest lines of its raw output; it is
drawn once in full from its finished `Step` (so a code fence that arrived in pieces is drawn whole)
and then collapses.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.events import Click
from textual.geometry import Size
from textual.highlight import highlight
from textual.widget import Widget
from textual.widgets import Collapsible, Markdown, Static

from t3edge.trajectory import Attachment, Step
from tui.widgets.preview import image_preview

FLUSH_INTERVAL_S = 0.05  # streamed text is drawn at most this often
LIVE_LINES = 8  # a streaming step shows its latest lines; the whole step is drawn when it is parsed


class LiveText(Widget):
    """The latest lines of a step's output while it streams.

    Redrawing only a bounded tail, and re-laying out only while it grows to LIVE_LINES, keeps the
    cost of each update constant however long the output gets, so typing stays responsive.
    """

    DEFAULT_CSS = "LiveText { height: auto; }"

    def __init__(self) -> None:
        super().__init__(classes="live")
        self.text = ""
        self._lines: list[Content] = []

    def set_text(self, text: str) -> None:
        self.text = text
        before = len(self._lines)
        self._lines = self._wrap()
        self.refresh(layout=len(self._lines) != before)

    def _wrap(self) -> list[Content]:
        width = self.content_region.width or 80  # 0 before the first layout
        tail = self.text[-width * LIVE_LINES * 2:]
        return Content(tail).wrap(width)[-LIVE_LINES:] if tail else []

    def on_resize(self) -> None:
        self._lines = self._wrap()
        self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._lines)

    def render(self) -> Content:
        return Content("\n").join(self._lines)


class Copyable(Static):
    """A focusable block whose text `y` copies to the clipboard (OSC 52, also inside tmux)."""

    can_focus = True
    BINDINGS: ClassVar[list[BindingType]] = [Binding("y", "copy", "Copy", id="message.copy")]

    def __init__(self, text: str, renderable: Any = None, *, classes: str = "") -> None:
        super().__init__(renderable if renderable is not None else Content(text), classes=classes)
        self.copy_text = text

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.copy_text)
        self.notify("Copied to the clipboard", timeout=2)


class CodeBlock(Copyable):
    """Python highlighted in the colours of the current theme; a click or `y` copies the code."""

    def __init__(self, code: str) -> None:
        super().__init__(code, highlight(code.rstrip(), language="python"), classes="code")

    def on_click(self, event: Click) -> None:
        event.stop()
        self.action_copy()


class UserMessage(Copyable):
    """The task as the user sent it, with its attachments."""

    def __init__(self, query: str, attachments: list[Attachment]) -> None:
        text = query
        if attachments:
            text += "\n" + "\n".join(f"📎 {a.path}" for a in attachments)
        super().__init__(query, Content(text), classes="user")


class FinalAnswerView(Copyable):
    """The run's answer, set apart from the steps."""

    def __init__(self, answer: Any) -> None:
        text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False, default=str)
        super().__init__(text, Content(text), classes="answer")
        self.border_title = "Answer"


class Notice(Static):
    """A line from the app itself (run ended, cancelled, failed); `kind` picks the style."""

    def __init__(self, text: str, kind: str = "info") -> None:
        super().__init__(Content(text), classes=f"notice {kind}")


def step_title(index: int, step: Step | None = None, state: str = "running…") -> Content:
    if step is None:
        return Content(f"Step {index} · {state}")
    parts = [f"Step {step.index}"]
    if step.tools_called:
        parts.append(", ".join(step.tools_called))
    if step.kind == "parse_error":
        parts.append("no code")
    elif step.error:
        parts.append("error")
    parts.append(f"{step.tokens_in}→{step.tokens_out} tok")
    parts.append(f"{step.seconds:.1f}s")
    return Content(" · ".join(parts))


def step_widgets(step: Step, *, previews: bool) -> list[Widget]:
    """The body of a finished step."""
    out: list[Widget] = []
    if step.thought:
        out.append(Markdown(step.thought, classes="thought"))
    if step.code:
        out.append(CodeBlock(step.code))
    elif step.raw_output.strip():
        out.append(Copyable(step.raw_output, classes="raw"))
    if step.kind == "parse_error" and not step.error:
        out.append(Static(Content("The model wrote no runnable code block."), classes="error"))
    if step.observation is not None:
        out.append(Copyable(step.observation, classes="observation"))
    if step.error:
        out.append(Copyable(step.error, classes="error"))
    for produced in step.produced_files:
        out.append(image_preview(produced, enabled=previews))
    return out


class StepView(Collapsible):
    """One agent step: streams while it runs, collapses when it is done (Enter on the title toggles)."""

    def __init__(self, index: int, *, previews: bool = True, step: Step | None = None) -> None:
        self.index = index
        self.previews = previews
        self.step: Step | None = step
        self.body = Vertical(classes="step-body")
        self._live: LiveText | None = None
        self._pending: list[str] = []
        self._streamed = ""
        self._flush_scheduled = False
        super().__init__(self.body, title=step_title(index, step), collapsed=step is not None, classes="step")
        if step is not None:
            self.add_class("done")
            self._mark(step)

    @classmethod
    def finished(cls, step: Step, *, previews: bool = True) -> StepView:
        """A step of a saved run, collapsed."""
        return cls(step.index, previews=previews, step=step)

    def on_mount(self) -> None:
        if self.step is not None:
            self.body.mount_all(step_widgets(self.step, previews=self.previews))
        else:
            self._live = LiveText()
            self.body.mount(self._live)

    @property
    def streamed_text(self) -> str:
        return self._streamed + "".join(self._pending)

    def add_delta(self, text: str) -> None:
        self._pending.append(text)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(FLUSH_INTERVAL_S, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._streamed += "".join(self._pending)
        self._pending.clear()
        if self._live is not None:
            self._live.set_text(self._streamed)

    def show_code(self, thought: str | None, code: str) -> None:
        self._flush()
        if self._live is not None:
            self._live.remove()
            self._live = None
        widgets: list[Widget] = [Markdown(thought, classes="thought")] if thought else []
        widgets.append(CodeBlock(code))
        self.body.mount_all(widgets)

    def show_problem(self, message: str) -> None:
        self._flush()
        self.body.mount(Static(Content(message), classes="error"))

    def show_observation(self, text: str, produced: list[str]) -> None:
        self.body.mount(Copyable(text, classes="observation"))
        self.body.mount_all([image_preview(p, enabled=self.previews) for p in produced])

    def show_error(self, error: str) -> None:
        self.body.mount(Copyable(error, classes="error"))

    async def finish(self, step: Step) -> None:
        """Redraw from the finished Step (the record that is saved) and collapse."""
        self._flush()
        self.step = step
        self._live = None
        await self.body.remove_children()
        await self.body.mount_all(step_widgets(step, previews=self.previews))
        self.title = step_title(step.index, step)
        self._mark(step)
        self.add_class("done")
        self.collapsed = True

    def stop(self, state: str) -> None:
        """The run ended while this step was still open (cancelled or failed)."""
        self._flush()
        if self.step is None:
            self.title = step_title(self.index, state=state)
            self.add_class("failed")

    def _mark(self, step: Step) -> None:
        if step.error or step.kind == "parse_error":
            self.add_class("failed")
