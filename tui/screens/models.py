"""The model picker: registry models (with whether each is downloaded) or any local path / URL."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from t3edge.models import (
    BackendKind,
    ModelEntry,
    default_backend_kind,
    load_models_config,
    local_path,
)


def entry_line(name: str, entry: ModelEntry, kind: BackendKind, downloaded: bool | None) -> Content:
    size = entry.mlx_size_gb if kind == "mlx" else entry.gguf_size_gb
    where = {True: "downloaded", False: f"not downloaded: t3edge models pull {name} --backend {kind}",
             None: "checking…"}[downloaded]
    size_text = f" · {size:.1f} GB" if size else ""
    return Content(f"{name}  ({entry.params or '?'}{size_text}, {kind})  {where}\n  {entry.description}")


class ModelPickerScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: str, kind: BackendKind | None) -> None:
        super().__init__(classes="dialog")
        self.current = current
        self.kind: BackendKind = kind or default_backend_kind()
        self.entries = load_models_config().models

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box wide"):
            yield Label(Content(f"Choose a model (now: {self.current})"), classes="dialog-title")
            yield OptionList(
                *[Option(entry_line(n, e, self.kind, None), id=n) for n, e in self.entries.items()],
                id="registry",
            )
            yield Label("…or a model folder, a .gguf file, an OpenAI-compatible URL, or replay:FILE")
            yield Input(placeholder="/path/to/model  (Enter to load)", id="path")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self.check_downloads()

    @work(thread=True, exit_on_error=False)
    def check_downloads(self) -> None:
        for name, entry in self.entries.items():
            found = local_path(name, entry, self.kind) is not None
            self.app.call_from_thread(self._mark, name, entry, found)

    def _mark(self, name: str, entry: ModelEntry, downloaded: bool) -> None:
        options = self.query_one(OptionList)
        options.replace_option_prompt(name, entry_line(name, entry, self.kind, downloaded))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        spec = event.value.strip()
        if spec:
            self.dismiss(spec)
