"""Image previews: drawn inline where the terminal supports graphics (textual-image), else a path.

textual-image asks the terminal what it can draw when first imported, which only works before
Textual takes over the terminal: `prepare()` does that import early (the `chat` command calls it).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from t3edge.trajectory import file_kind

_module: ModuleType | None = None
_tried = False


def prepare() -> bool:
    """Import textual-image (queries the terminal once); False if it is not installed."""
    global _module, _tried
    if not _tried:
        _tried = True
        try:
            _module = importlib.import_module("textual_image.widget")
        except ImportError:
            _module = None
    return _module is not None


def image_preview(path: str | Path, *, enabled: bool = True, caption: str | None = None,
                  classes: str = "preview") -> Widget:
    """The image at `path` drawn above its caption (default: the path; "" for none), or only the
    caption where it cannot be drawn."""
    p = Path(path)
    text = str(p) if caption is None else caption
    label = Static(Content(f"🖼  {text or p.name}"), classes="file-path")
    if not enabled or file_kind(p) != "image" or not p.is_file() or not prepare():
        return label
    assert _module is not None
    try:
        with PILImage.open(p) as img:
            img.load()
            picture = img.copy()
    except (OSError, UnidentifiedImageError):
        return Static(Content(f"{p} (not a readable image)"), classes="file-path error")
    image = _module.Image(picture, classes=classes)
    return Vertical(image, label, classes="image-box") if text else Vertical(image, classes="image-box")
