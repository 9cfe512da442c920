"""Text in images: RapidOCR (ONNX Runtime, models shipped inside the package, offline)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from t3edge.tools.base import ToolContext, tool
from t3edge.tools.bounds import load_for_tool

MAX_PIXELS = 4096 * 4096  # larger images are resized to this many pixels first (memory and time)


@lru_cache(maxsize=1)
def _engine() -> Any:
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


@tool
def ocr(ctx: ToolContext, image_path: str) -> list[str]:
    """Read the text in an image; returns the text lines, top to bottom.

    Args:
        image_path: path of the image file
    """
    img, _ = load_for_tool(ctx.input_path(image_path, what="image"), MAX_PIXELS, "for OCR")
    result, _ = _engine()(np.asarray(img)[:, :, ::-1])
    lines = sorted(result or [], key=lambda r: (min(p[1] for p in r[0]), min(p[0] for p in r[0])))
    return [str(r[1]) for r in lines]
