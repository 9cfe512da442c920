"""Attachment chips above the message box; pressing a chip removes it before sending."""

from __future__ import annotations

from pathlib import Path

from textual.containers import HorizontalGroup
from textual.content import Content
from textual.message import Message
from textual.widgets import Button


class Chip(Button):
    def __init__(self, path: Path) -> None:
        super().__init__(Content(f"📎 {path.name} ✕"), classes="chip", compact=True)
        self.path = path
        self.tooltip = f"{path}: press to remove"


class AttachmentBar(HorizontalGroup):
    """The files that go with the next message."""

    class Changed(Message):
        def __init__(self, paths: list[Path]) -> None:
            super().__init__()
            self.paths = paths

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.display = False

    @property
    def paths(self) -> list[Path]:
        return [chip.path for chip in self.query(Chip)]

    def add(self, path: Path) -> bool:
        """Add a file; False if it is already attached."""
        path = path.resolve()
        if path in self.paths:
            return False
        self.mount(Chip(path))
        self.display = True
        self.post_message(self.Changed([*self.paths, path]))
        return True

    def remove_path(self, path: Path) -> None:
        for chip in self.query(Chip):
            if chip.path == path:
                chip.remove()
        remaining = [p for p in self.paths if p != path]
        self.display = bool(remaining)
        self.post_message(self.Changed(remaining))

    def clear(self) -> None:
        self.remove_children()
        self.display = False
        self.post_message(self.Changed([]))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if isinstance(event.button, Chip):
            event.stop()
            self.remove_path(event.button.path)
