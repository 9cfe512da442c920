"""Documents as text: markitdown (pdf, docx, xlsx, pptx, csv, html, json, zip, txt); a question
about the document is answered by the loaded model over that text."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from t3edge.tools.base import ToolContext, ToolError, tool
from t3edge.tools.vision import ask_vlm

MAX_CHARS = 40000


@lru_cache(maxsize=1)
def _converter() -> Any:
    from markitdown import MarkItDown

    return MarkItDown()


def file_text(ctx: ToolContext, file_path: str) -> str:
    path = ctx.input_path(file_path)
    try:
        text = _converter().convert(str(path)).text_content or ""
    except Exception as exc:  # markitdown raises many kinds for unreadable or unsupported files
        raise ToolError(f"cannot read {path.name} as text: {type(exc).__name__}: {exc}") from exc
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS] + f"\n... [truncated: {len(text) - MAX_CHARS} more characters]"
    return text


@tool
def inspect_file_as_text(ctx: ToolContext, file_path: str, question: str | None = None) -> str:
    """Read a document (pdf, docx, xlsx, pptx, csv, html, json, txt, zip) as markdown text; with a question, answer it from the document instead.

    Args:
        file_path: path of the document
        question: optional question to answer from the document
    """
    text = file_text(ctx, file_path)
    if question is None or not question.strip():
        return text
    prompt = (f"Here is the content of the file {file_path}:\n\n{text}\n\n"
              f"Answer this question from the file, briefly: {question}")
    return ask_vlm(ctx, "inspect_file_as_text", prompt)
