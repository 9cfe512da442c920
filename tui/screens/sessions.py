"""The sessions list: open, rename, delete, export and search saved chats (those of `t3edge run`
too: one chat store)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label

from t3edge.chats import ChatStore
from t3edge.errors import T3Error
from tui.screens.dialogs import AskText, Confirm

if TYPE_CHECKING:
    from tui.app import T3App


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


class SessionsScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("enter", "open", "Open", priority=True),
        Binding("r", "rename", "Rename"),
        Binding("d", "delete", "Delete"),
        Binding("m", "export('markdown')", "Export .md"),
        Binding("j", "export('jsonl')", "Export .jsonl"),
        Binding("slash", "search", "Search"),
    ]

    app: T3App

    def __init__(self, store: ChatStore) -> None:
        super().__init__(classes="dialog")
        self.store = store
        self.matches: dict[str, str] | None = None  # chat id -> snippet, while a search is shown

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box wide"):
            yield Label("Sessions", classes="dialog-title")
            yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
            yield Label("", id="empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Title", "Runs", "Model", "Last used", "Id (t3edge chat --session)", "Match")
        self.refresh_rows()
        table.focus()

    def refresh_rows(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        sessions = self.store.list()
        if self.matches is not None:
            sessions = [s for s in sessions if s.id in self.matches]
        for info in sessions:
            snippet = (self.matches or {}).get(info.id, "")
            table.add_row(Text(info.title), str(info.runs), Text(info.model or "?"), _when(info.updated_at),
                          info.id, Text(snippet), key=info.id)
        empty = "No chat matches." if self.matches is not None else "No saved chats yet."
        self.query_one("#empty", Label).update("" if sessions else empty)

    def action_search(self) -> None:
        def searched(words: str | None) -> None:
            if words is None:
                return
            if not words.strip():
                self.matches = None
            else:
                try:
                    hits = self.store.search(words)
                except T3Error as exc:
                    self.notify(str(exc), severity="error")
                    return
                self.matches = {}
                for hit in hits:  # most recent run first: its snippet stands for the chat
                    self.matches.setdefault(hit.chat_id, hit.snippet)
            self.refresh_rows()

        self.app.push_screen(AskText("Search the chats (words of questions, thoughts, code, observations, "
                                     "answers; empty: all):"), searched)

    @property
    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return key.value

    async def action_open(self) -> None:
        sid = self.selected
        if sid is None:
            return
        if self.app.chat.running:
            self.notify("Cancel the current run first (Esc).", severity="warning")
            return
        self.dismiss(None)
        await self.app.open_session(sid)

    def action_rename(self) -> None:
        sid = self.selected
        if sid is None:
            return

        def renamed(title: str | None) -> None:
            if title is None:
                return
            try:
                self.store.rename(sid, title)
            except T3Error as exc:
                self.notify(str(exc), severity="error")
            self.refresh_rows()
            if sid == self.app.session_id:
                self.app.sub_title = title.strip()

        self.app.push_screen(AskText("New title:", self.store.get(sid).title), renamed)

    def action_delete(self) -> None:
        sid = self.selected
        if sid is None:
            return

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            self.store.delete(sid)
            if sid == self.app.session_id:
                self.app.session_id = None
            self.refresh_rows()
            self.notify("Session deleted")

        self.app.push_screen(Confirm(f"Delete {self.store.get(sid).title!r} and all its runs?"), confirmed)

    def action_export(self, fmt: str) -> None:
        sid = self.selected
        if sid is None:
            return
        self.app.export_session(sid, fmt)
