"""Tools that look at images: visual questions and grounding with the loaded VLM, faces with OpenCV."""

from __future__ import annotations

import contextlib
import re
import threading
from functools import lru_cache
from typing import Any

from t3edge.backends.base import Completion, GenerationConfig, ImagePart, Message, TextPart
from t3edge.images import image_size
from t3edge.tools.base import ToolContext, ToolError, tool
from t3edge.tools.bounds import load_for_tool, stop_requested, using_model

# Larger images are resized to this many pixels first: before the model's own image policy, for
# the memory of loading them; before OpenCV's face detector, for its time and memory.
MAX_PIXELS = 4096 * 4096

# Qwen2-VL grounding: `<|box_start|>(x1,y1),(x2,y2)<|box_end|>` in 0-1000 coordinates; the special
# tokens may be dropped by the detokenizer, so only the coordinate pairs are required.
_BOX = re.compile(r"\(\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*\)\s*,?\s*\(\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*\)")


def ask_vlm(ctx: ToolContext, tool_name: str, question: str, image_path: str | None = None,
            max_tokens: int = 512) -> str:
    """One VLM answer (greedy) to a question, about an image when given."""
    backend = ctx.require_backend(tool_name)
    parts: list[Any] = []
    if image_path is not None and not backend.supports_images:
        raise ToolError(f"{tool_name} needs a vision model, and the loaded model ({backend.model_id}) is "
                        "text-only: it cannot look at images. Read the image's text with "
                        "ocr(image_path=...) or find faces with facedetection(image_path=...) instead.")
    if image_path is not None:
        path = ctx.input_path(image_path, what="image")
        width, height = image_size(path)
        large = width * height > MAX_PIXELS
        parts.append(ImagePart(load_for_tool(path, MAX_PIXELS, "for the model")[0] if large else str(path)))
    parts.append(TextPart(question))
    base = ctx.generation or GenerationConfig()
    config = base.model_copy(update={"max_tokens": max_tokens, "stop": []})
    completion: Completion | None = None
    with using_model(), contextlib.closing(backend.stream([Message("user", parts)], config)) as stream:
        for item in stream:
            if stop_requested():  # cut off: the model is freed at this token
                raise ToolError(f"{tool_name} was stopped: it ran out of time")
            if isinstance(item, Completion):
                completion = item
    if completion is None:
        raise ToolError(f"{tool_name}: the {backend.name} backend ended without an answer")
    return completion.text.strip()


@tool(needs_vision=True)
def visualizer(ctx: ToolContext, question: str, image_path: str) -> str:
    """Answer a question about an image (describe it, read a chart, count things) with the vision model.

    Args:
        question: what to ask about the image
        image_path: path of the image file
    """
    if not question.strip():
        raise ToolError("visualizer needs a non-empty question")
    return ask_vlm(ctx, "visualizer", question, image_path)


def parse_boxes(text: str, width: int, height: int) -> list[list[int]]:
    """Grounding boxes in 0-1000 coordinates, scaled to pixel [x1, y1, x2, y2] and clipped."""
    boxes = []
    for m in _BOX.finditer(text):
        x1, y1, x2, y2 = (float(v) for v in m.groups())
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        box = [round(x1 * width / 1000), round(y1 * height / 1000),
               round(x2 * width / 1000), round(y2 * height / 1000)]
        box = [min(max(v, 0), lim) for v, lim in zip(box, (width, height, width, height))]
        if box not in boxes:
            boxes.append(box)
    return boxes


@tool(needs_vision=True)
def objectlocation(ctx: ToolContext, object: str, image_path: str) -> list[list[int]]:
    """Find an object in an image; returns its bounding boxes [x1, y1, x2, y2] in pixels (empty if not found).

    Args:
        object: the object to find, in a few words
        image_path: path of the image file
    """
    if not object.strip():
        raise ToolError("objectlocation needs the name of an object")
    path = ctx.input_path(image_path, what="image")
    width, height = image_size(path)
    answer = ask_vlm(ctx, "objectlocation", f"Detect the bounding box of: {object}", str(path), 128)
    return parse_boxes(answer, width, height)


_FACE_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _face_cascade() -> Any:
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise ToolError("this OpenCV has no Haar face detector (OpenCV 5 dropped it): "
                        'pip install "opencv-python>=4.8,<5"')
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise ToolError("OpenCV's face model could not be loaded (reinstall opencv-python-headless)")
    return cascade


@tool
def facedetection(ctx: ToolContext, image_path: str) -> list[list[int]]:
    """Detect human faces in an image; returns a list of boxes [x1, y1, x2, y2] in pixels.

    Args:
        image_path: path of the image file
    """
    import cv2
    import numpy as np

    img, scale = load_for_tool(ctx.input_path(image_path, what="image"), MAX_PIXELS,
                               "for face detection (boxes are in the original's pixels)")
    gray = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2GRAY)
    gray = cv2.equalizeHist(gray)
    side = max(24, min(img.size) // 20)
    with _FACE_LOCK:  # one classifier, not safe to run from two threads at once (items run at once)
        found = _face_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    return [[round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale)]
            for (x, y, w, h) in found]
