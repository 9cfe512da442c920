"""The app's side of the chat store (`t3edge.chats`): where it is, where exports go, and the
notice about a damaged database."""

from __future__ import annotations

from pathlib import Path

from t3edge.chats import ChatStore, default_store, store_path
from tui.settings import tui_dir


def open_store() -> ChatStore:
    """The one chat store. The app's own sessions database of earlier versions becomes it when
    there is none yet (the same schema, migrated forward on open)."""
    legacy, target = tui_dir() / "sessions.db", store_path()
    if legacy.is_file() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        legacy.rename(target)
    return default_store()


def export_folder(configured: str | None) -> Path:
    return Path(configured).expanduser() if configured else tui_dir() / "exports"


def aside_notice(store: ChatStore) -> str | None:
    """The message telling the user where a damaged database was moved, if one was."""
    if store.set_aside is None:
        return None
    return f"The chats database could not be read; it was moved to {store.set_aside} and a new one started."
