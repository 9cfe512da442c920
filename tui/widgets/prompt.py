"""The message box: Enter sends, a separate key inserts a newline, pasted or dropped paths attach.

Terminals disagree on what they send for shift+enter (most send plain Enter), so the newline
binding also has ctrl+j (a line feed in every terminal) and alt+enter; all are remappable
(`prompt.send`, `prompt.newline` in the tui keymap).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea


def pasted_paths(text: str) -> list[Path] | None:
    """The files named by pasted text (as a terminal drops them: quoted or with escaped spaces).

    None when the text is not only existing file paths, so it is pasted as text instead.
    """
    text = text.strip()
    if not text or len(text) > 4096:
        return None
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    paths = [Path(w.removeprefix("file://")).expanduser() for w in words]
    return paths if paths and all(p.is_file() for p in paths) else None


class PromptInput(TextArea):
    """A multi-line input whose Enter posts `Submitted`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Send", id="prompt.send", priority=True),
        Binding("ctrl+j,alt+enter,shift+enter", "newline", "Newline", id="prompt.newline", priority=True),
    ]

    class Submitted(Message):
        def __init__(self, prompt: PromptInput, text: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text

    class PathsPasted(Message):
        def __init__(self, paths: list[Path]) -> None:
            super().__init__()
            self.paths = paths

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus")
        self.placeholder = "Ask about your files…  (Enter sends · ctrl+j newline · ctrl+t attach · ctrl+p commands)"

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.insert("\n")

    async def _on_paste(self, event: events.Paste) -> None:
        # Textual also runs TextArea's own paste handler after this one, unless default is prevented.
        paths = pasted_paths(event.text)
        if paths is None:
            return
        event.stop()
        event.prevent_default()
        self.post_message(self.PathsPasted(paths))
