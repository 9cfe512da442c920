"""Documents as markdown text: markitdown for every format it knows, and mammoth (with
markdownify) for Word files that markitdown cannot read.

markitdown's docx converter has rejected valid documents in some releases (0.1.9 refuses every
file python-docx writes: "Could not find the body element"), while mammoth, the library it wraps,
converts them. So a .docx that markitdown fails on is converted by mammoth directly, and only a
file that both refuse is unreadable.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

WORD_SUFFIXES = {".docx", ".docm"}


class UnreadableDocument(Exception):
    """The file could not be converted to text; the message says what the converters said."""


@lru_cache(maxsize=1)
def _markitdown() -> Any:
    from markitdown import MarkItDown

    return MarkItDown()


def _word_text(path: Path) -> str:
    """Word -> HTML (mammoth) -> markdown (markdownify), as markitdown itself does; mammoth's own
    markdown writer escapes every '.' and '-', which garbles numbers."""
    import mammoth
    from markdownify import markdownify

    with path.open("rb") as handle:
        html = mammoth.convert_to_html(handle).value
    return markdownify(html, heading_style="ATX").strip() + "\n"


def _first_pages(path: Path, max_pages: int, folder: str) -> tuple[Path, int]:
    """A PDF of the first `max_pages` pages of `path` (in `folder`; `path` itself when it has no
    more) and the page count of `path`."""
    from PyPDF2 import PdfReader, PdfWriter
    from PyPDF2.errors import PyPdfError

    try:
        reader = PdfReader(str(path))
        pages = len(reader.pages)
        if pages <= max_pages:
            return path, pages
        writer = PdfWriter()
        for page in reader.pages[:max_pages]:
            writer.add_page(page)
        short = Path(folder) / path.name
        with short.open("wb") as handle:
            writer.write(handle)
    except (PyPdfError, OSError, ValueError, KeyError) as exc:
        raise UnreadableDocument(f"cannot read the pages of the PDF: {type(exc).__name__}: {exc}") from exc
    return short, pages


def document_text(path: str | Path, *, max_pages: int | None = None) -> str:
    """The markdown text of a document (pdf, docx, xlsx, pptx, csv, html, json, zip, txt...).

    With `max_pages`, a longer PDF is read up to that page, and the text starts with a note
    saying so ("[read the first 50 of 3000 pages]"). Raises UnreadableDocument, naming the
    converters' errors, when no converter can read it.
    """
    path = Path(path)
    if max_pages is not None and path.suffix.lower() == ".pdf":
        with tempfile.TemporaryDirectory(prefix="t3edge-pdf-") as folder:
            short, pages = _first_pages(path, max_pages, folder)
            text = _convert(short)
        return f"[read the first {max_pages} of {pages} pages]\n\n{text}" if short != path else text
    return _convert(path)


def _convert(path: Path) -> str:
    try:
        return _markitdown().convert(str(path)).text_content or ""
    except Exception as exc:  # markitdown raises many kinds for unreadable or unsupported files
        first = f"{type(exc).__name__}: {exc}"
        if path.suffix.lower() not in WORD_SUFFIXES:
            raise UnreadableDocument(first) from exc
    try:
        return _word_text(path)
    except Exception as exc:  # mammoth raises zipfile, KeyError or XML errors for a damaged file
        raise UnreadableDocument(f"{first}; mammoth: {type(exc).__name__}: {exc}") from exc
