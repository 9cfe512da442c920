"""A task file as text for a verifier: plain-text types read directly, documents through
`t3edge.documents`."""

from __future__ import annotations

from pathlib import Path

from synth.errors import Rejected
from t3edge.documents import UnreadableDocument, document_text

PLAIN_TEXT = {".txt", ".csv", ".json", ".md", ".py", ".xml", ".html", ".htm"}


def file_as_text(path: str | Path, max_chars: int) -> str:
    """The file's text (truncated to `max_chars`); Rejected(`unreadable_file`) if it can't be read."""
    p = Path(path)
    try:
        if p.suffix.lower() in PLAIN_TEXT:
            text = p.read_text(encoding="utf-8", errors="replace")
        else:
            text = document_text(p)
    except (OSError, UnreadableDocument) as exc:
        raise Rejected("unreadable_file", f"{p.name}: {exc}") from exc
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n[... {len(text) - max_chars} more characters]"
    return text
