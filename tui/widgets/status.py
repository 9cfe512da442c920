"""The status line: model, backend, state, and context used against the model's context size."""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static


class StatusLine(Static):
    model: reactive[str] = reactive("no model")
    backend: reactive[str] = reactive("")
    state: reactive[str] = reactive("starting")
    context_used: reactive[int] = reactive(0)
    context_size: reactive[int | None] = reactive(None)

    def __init__(self, *, warn_ratio: float = 0.85, id: str | None = None) -> None:
        super().__init__(id=id)
        self.warn_ratio = warn_ratio

    @property
    def near_limit(self) -> bool:
        return bool(self.context_size) and self.context_used >= self.warn_ratio * (self.context_size or 1)

    def render(self) -> Content:
        size = f"{self.context_size:,}" if self.context_size else "?"
        ctx = f"ctx {self.context_used:,} / {size}"
        if self.near_limit:
            ctx += " ⚠ near the limit"
        backend = f" [{self.backend}]" if self.backend else ""
        return Content(f" {self.model}{backend} · {self.state} · {ctx}")

    def watch_context_used(self) -> None:
        self.set_class(self.near_limit, "warn")

    def watch_context_size(self) -> None:
        self.set_class(self.near_limit, "warn")
