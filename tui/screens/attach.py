"""The attachment picker: browse files with a preview of the highlighted image, or type a path."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, Label, Static, Tree

from t3edge.trajectory import file_kind
from tui.widgets.preview import image_preview


class FileTree(DirectoryTree):
    """Files and folders, hidden ones left out."""

    def filter_paths(self, paths):  # type: ignore[no-untyped-def]
        return [p for p in paths if not p.name.startswith(".")]


def describe_file(path: Path) -> str:
    size = path.stat().st_size
    units = ["B", "KB", "MB", "GB"]
    value, unit = float(size), 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{path.name}\n{file_kind(path)} · {value:.1f} {units[unit]}"


class AttachScreen(ModalScreen[Path | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, start: Path, *, previews: bool = True) -> None:
        super().__init__(classes="dialog")
        self.start = start
        self.previews = previews

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box wide tall"):
            yield Label("Attach a file (Enter on a file picks it)", classes="dialog-title")
            with Horizontal(id="picker"):
                yield FileTree(self.start, id="tree")
                yield VerticalScroll(Static(Content("Highlight a file to preview it.")), id="preview")
            yield Input(placeholder="…or type or paste a path and press Enter", id="path")

    def on_mount(self) -> None:
        self.query_one(FileTree).focus()

    async def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        entry = event.node.data
        path = getattr(entry, "path", None)
        if path is None or not Path(path).is_file():
            return
        await self.show_preview(Path(path))

    async def show_preview(self, path: Path) -> None:
        pane = self.query_one("#preview", VerticalScroll)
        await pane.remove_children()
        widgets = [Static(Content(describe_file(path)))]
        if file_kind(path) == "image":
            widgets.append(image_preview(path, enabled=self.previews, caption=""))
        await pane.mount_all(widgets)

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(event.path)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = Path(event.value.strip().strip("'\"")).expanduser()
        if path.is_file():
            self.dismiss(path)
        else:
            self.notify(f"Not a file: {path}", severity="error")
