"""Tools backed by larger optional models: segmentation and image generation.

`segmentation` works offline with what is installed: the loaded VLM finds the object and OpenCV's
GrabCut cuts it out. `image_generator` needs a diffusion model, which is not part of t3edge; it
answers with what to install instead of failing obscurely.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from PIL import Image

from t3edge.tools.base import ToolContext, ToolError, tool
from t3edge.tools.bounds import load_for_tool
from t3edge.tools.vision import ask_vlm, parse_boxes

MAX_PIXELS = 2048 * 2048  # GrabCut's cost grows with the pixels: larger images are cut at this size


@tool(needs_vision=True)
def segmentation(ctx: ToolContext, image_path: str, prompt: str) -> str:
    """Cut out an object: returns the path of a black-and-white mask image (white = the object).

    Args:
        image_path: path of the image file
        prompt: the object to segment, in a few words
    """
    import cv2

    path = ctx.input_path(image_path, what="image")
    img, _ = load_for_tool(path, MAX_PIXELS, "for segmentation (the mask has the smaller size)")
    answer = ask_vlm(ctx, "segmentation", f"Detect the bounding box of: {prompt}", str(path), 128)
    boxes = parse_boxes(answer, *img.size)
    if not boxes:
        raise ToolError(f"segmentation: the model did not find {prompt!r} in the image")
    x1, y1, x2, y2 = boxes[0]
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise ToolError(f"segmentation: the box found for {prompt!r} is too small: {boxes[0]}")
    bgr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])
    mask = np.zeros(bgr.shape[:2], np.uint8)
    bg, fg = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(bgr, mask, (x1, y1, x2 - x1, y2 - y1), bg, fg, 3, cv2.GC_INIT_WITH_RECT)
    binary = np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    out = ctx.output_path(f"{path.stem}_mask", ".png")
    Image.fromarray(binary, "L").save(out)
    return str(out)


@tool
def image_generator(ctx: ToolContext, prompt: str) -> str:
    """Generate an image from a text description; returns the path of the new image.

    Args:
        prompt: what the image should show
    """
    if importlib.util.find_spec("diffusers") is None:
        raise ToolError(
            "image generation is not installed in this t3edge: it needs a diffusion model "
            "(pip install diffusers torch, then a local text-to-image model); answer without it"
        )
    raise ToolError(
        "diffusers is installed but no local text-to-image model is configured for t3edge; "
        "answer without generating an image"
    )
