"""Text in images: RapidOCR (ONNX Runtime, models shipped inside the package, offline)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from t3edge.images import load_image
from t3edge.tools.base import ToolContext, tool


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
    img = load_image(ctx.input_path(image_path, what="image"))
    result, _ = _engine()(np.asarray(img)[:, :, ::-1])
    lines = sorted(result or [], key=lambda r: (min(p[1] for p in r[0]), min(p[0] for p in r[0])))
    return [str(r[1]) for r in lines]
