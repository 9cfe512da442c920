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
MAX_PAGES = 50  # a longer PDF is read up to this page (the text says so)
MAX_UNPACKED_BYTES = 200 * 2**20  # a zip bomb made by the code must not fill this process's memory
MAX_MEMBERS = 10000  # files in an archive, nested ones included
MAX_NESTING = 4  # archives inside archives


class TooLarge(ToolError):
    """A document unpacks to more than the tool reads."""


def check_unpacked(source: str | IO[bytes], name: str, depth: int = 0, seen: list[int] | None = None) -> None:
    """Refuse a zip-based file (zip, docx, xlsx, pptx) whose members, nested archives included,
    unpack to more than MAX_UNPACKED_BYTES, number more than MAX_MEMBERS or nest deeper than
    MAX_NESTING; only sizes from the archives' directories are read, never the members' data
    (a nested archive, at most MAX_UNPACKED_BYTES, is read to look inside it)."""
    if not zipfile.is_zipfile(source):
        return
    totals = seen if seen is not None else [0, 0]  # bytes, members
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            totals[0] += info.file_size
            totals[1] += 1
            if totals[0] > MAX_UNPACKED_BYTES:
                raise TooLarge(f"{name} is too large to read as text (it unpacks to more than "
                               f"{MAX_UNPACKED_BYTES // 2**20} MB); read a part of it with pandas or open()")
            if totals[1] > MAX_MEMBERS:
                raise TooLarge(f"{name} is too large to read as text (more than {MAX_MEMBERS} files inside); "
                               "list it with zipfile and read the members you need")
            if info.filename.lower().endswith(".zip"):
                if depth >= MAX_NESTING:
                    raise TooLarge(f"{name} is too deeply nested to read as text (archives more than "
                                   f"{MAX_NESTING} deep); unpack it with zipfile first")
                with archive.open(info) as member:
                    check_unpacked(io.BytesIO(member.read()), name, depth + 1, totals)


def file_text(ctx: ToolContext, file_path: str) -> str:
    path = ctx.input_path(file_path)
    if path.stat().st_size > MAX_UNPACKED_BYTES:
        raise TooLarge(f"{path.name} is too large to read as text (more than {MAX_UNPACKED_BYTES // 2**20} MB); "
                       "read a part of it with pandas or open()")
    try:
        check_unpacked(str(path), path.name)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise ToolError(f"cannot read {path.name} as text: it is a damaged archive "
                        f"({type(exc).__name__}: {exc})") from exc
    try:
        text = document_text(path, max_pages=MAX_PAGES)
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
