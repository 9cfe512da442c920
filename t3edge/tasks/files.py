"""Writers of task files whose bytes depend only on their content (no timestamps, no random ids)."""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
import zipfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

FIXED_TIME = datetime.datetime(2024, 1, 1, 0, 0, 0)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_MODIFIED = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")
_CREATED = re.compile(rb"(<dcterms:created[^>]*>)[^<]*(</dcterms:created>)")


def normalize_zip(path: Path) -> None:
    """Rewrite an Office file (a zip) with fixed member times and fixed document dates."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            if name == "docProps/core.xml":
                data = _MODIFIED.sub(rb"\g<1>2024-01-01T00:00:00Z\g<2>", data)
                data = _CREATED.sub(rb"\g<1>2024-01-01T00:00:00Z\g<2>", data)
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    path.write_bytes(buffer.getvalue())


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_xlsx(path: Path, sheet: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.title = sheet
    ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    book.properties.creator = "t3edge"
    book.properties.created = book.properties.modified = FIXED_TIME
    book.save(path)
    normalize_zip(path)


def write_docx(path: Path, title: str, paragraphs: Sequence[str]) -> None:
    import docx

    document = docx.Document()
    document.add_heading(title, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    props = document.core_properties
    props.author = "t3edge"
    props.created = props.modified = FIXED_TIME
    props.last_modified_by = "t3edge"
    props.revision = 1
    document.save(str(path))
    normalize_zip(path)


def write_pdf(path: Path, lines: Sequence[str], *, title_size: int = 16) -> None:
    """A one-page PDF: the first line as a title, the rest as text (reportlab, invariant mode)."""
    from reportlab.pdfgen import canvas

    page = canvas.Canvas(str(path), invariant=1)
    page.setAuthor("t3edge")
    y = 760
    for i, line in enumerate(lines):
        page.setFont("Helvetica-Bold" if i == 0 else "Helvetica", title_size if i == 0 else 12)
        page.drawString(72, y, line)
        y -= 30 if i == 0 else 20
    page.showPage()
    page.save()


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def render_lines(path: Path, lines: Sequence[str], *, size: int = 48, margin: int = 30,
                 spacing: int = 28, fill: tuple[int, int, int] = (20, 20, 20),
                 background: tuple[int, int, int] = (255, 255, 255)) -> None:
    """Dark text lines, large, on a light background: what OCR reads back exactly."""
    f = font(size)
    boxes = [f.getbbox(line) for line in lines]
    width = max(b[2] for b in boxes) + 2 * margin
    height = sum(b[3] for b in boxes) + spacing * (len(lines) - 1) + 2 * margin
    img = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(img)
    y = margin
    for line, box in zip(lines, boxes):
        draw.text((margin, y), line, fill=fill, font=f)
        y += box[3] + spacing
    img.save(path, format="PNG")


def save_png(img: Image.Image, path: Path) -> None:
    img.save(path, format="PNG")
