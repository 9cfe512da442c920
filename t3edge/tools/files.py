"""Documents as text (`t3edge.documents`: pdf, docx, xlsx, pptx, csv, html, json, zip, txt); a
question about the document is answered by the loaded model over that text."""

from __future__ import annotations

import io
import zipfile
from typing import IO

from t3edge.documents import UnreadableDocument, document_text
from t3edge.tools.base import ToolContext, ToolError, tool
from t3edge.tools.vision import ask_vlm

MAX_CHARS = 40000
MAX_UNPACKED_BYTES = 200 * 2**20  # a zip bomb made by the code must not fill this process's memory
_MAX_NESTING = 4


def unpacked_size(source: str | IO[bytes], depth: int = 0) -> int:
    """Bytes a document expands to: zip-based files (zip, docx, xlsx, pptx) count their members,
    nested archives included; past MAX_UNPACKED_BYTES (or too deep a nesting) counting stops."""
    if not zipfile.is_zipfile(source):
        return 0
    total = 0
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            total += info.file_size
            if total > MAX_UNPACKED_BYTES:
                return total
            if info.filename.lower().endswith(".zip"):
                if depth >= _MAX_NESTING:
                    return MAX_UNPACKED_BYTES + 1
                with archive.open(info) as member:
                    total += unpacked_size(io.BytesIO(member.read()), depth + 1)
    return total


def file_text(ctx: ToolContext, file_path: str) -> str:
    path = ctx.input_path(file_path)
    try:
        unpacked = max(unpacked_size(str(path)), path.stat().st_size)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        unpacked = path.stat().st_size  # a damaged archive: the converter says what is wrong with it
    if unpacked > MAX_UNPACKED_BYTES:
        raise ToolError(f"{path.name} is too large to read as text (it unpacks to more than "
                        f"{MAX_UNPACKED_BYTES // 2**20} MB); read a part of it with pandas or open()")
    try:
        text = document_text(path)
    except UnreadableDocument as exc:
        raise ToolError(f"cannot read {path.name} as text: {exc}") from exc
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
