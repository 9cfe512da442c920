"""Documents as text: a Word file is read whether or not markitdown's docx converter accepts it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from t3edge import documents
from t3edge.documents import UnreadableDocument, document_text
from t3edge.tools import ToolContext, default_tools

CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>
</Types>"""
RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>
</Relationships>"""
DOCUMENT = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Quarterly Report</w:t></w:r></w:p>
<w:p><w:r><w:t>Revenue grew to 4.2 million euros.</w:t></w:r></w:p>
</w:body></w:document>"""


def word_by_python_docx(path: Path) -> Path:
    import docx

    doc = docx.Document()
    doc.add_heading("Quarterly Report", level=1)
    doc.add_paragraph("Revenue grew to 4.2 million euros.")
    doc.save(str(path))
    return path


def word_by_hand(path: Path) -> Path:
    """A minimal WordprocessingML package as other writers (LibreOffice, pandoc) lay it out."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES)
        z.writestr("_rels/.rels", RELS)
        z.writestr("word/document.xml", DOCUMENT)
    return path


WRITERS = {"python-docx": word_by_python_docx, "hand-written OOXML": word_by_hand}


@pytest.mark.parametrize("writer", WRITERS)
def test_a_word_file_reads_as_text_with_the_installed_markitdown(writer: str, tmp_path: Path) -> None:
    text = document_text(WRITERS[writer](tmp_path / "report.docx"))
    assert "Quarterly Report" in text and "4.2 million euros" in text


class _FailingConverter:
    """markitdown as release 0.1.9 behaves on every python-docx file."""

    def convert(self, source: str) -> None:
        raise ValueError("DocxConverter threw ValueError: Could not find the body element")


@pytest.mark.parametrize("writer", WRITERS)
def test_a_word_file_markitdown_rejects_is_read_by_mammoth(writer: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "_markitdown", lambda: _FailingConverter())
    text = document_text(WRITERS[writer](tmp_path / "report.docx"))
    assert "Quarterly Report" in text and "4.2 million euros" in text


def test_a_damaged_word_file_names_both_converters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "_markitdown", lambda: _FailingConverter())
    bad = tmp_path / "bad.docx"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UnreadableDocument, match="Could not find the body element.*mammoth"):
        document_text(bad)


def test_inspect_file_as_text_reads_a_python_docx_file(tmp_path: Path) -> None:
    path = word_by_python_docx(tmp_path / "report.docx")
    tools = default_tools().with_context(ToolContext(workspace=tmp_path, allowed_files=[path]))
    text = tools.call("inspect_file_as_text", kwargs={"file_path": str(path)})
    assert "Quarterly Report" in text and "4.2 million euros" in text
