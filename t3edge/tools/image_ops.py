"""`image_edit`: image operations picked from a short instruction, done with PIL.

Instructions (several may be joined with `;`):
crop x1,y1,x2,y2 | resize WxH | resize N% | rotate DEG | flip horizontal|vertical |
draw box x1,y1,x2,y2 [color] [label "text"] | add text "TEXT" at x,y [color] [size N] |
blur [radius] | grayscale | brightness FACTOR (or brighten / darken)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageColor, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from t3edge.images import image_size, load_image
from t3edge.tools.base import ToolContext, ToolError, tool

MAX_PIXELS = 40_000_000  # larger images are refused (edits keep every pixel, so none is resized)

_NUM = r"-?\d+(?:\.\d+)?"
_QUOTED = re.compile(r"[\"'“‘](.+?)[\"'”’]")


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(_NUM, text)]


def _color(text: str, default: str) -> str:
    for word in re.findall(r"#[0-9a-fA-F]{3,8}|[a-zA-Z]+", text):
        try:
            ImageColor.getrgb(word)
        except ValueError:
            continue
        return word
    return default


def _box(text: str, img: Image.Image, op: str) -> tuple[int, int, int, int]:
    nums = _numbers(_QUOTED.sub("", text))
    if len(nums) < 4:
        raise ToolError(f"{op} needs a box x1,y1,x2,y2 in pixels, e.g. '{op} 10,20,110,220'")
    x1, y1, x2, y2 = (round(v) for v in nums[:4])
    x1, x2 = sorted((max(0, x1), min(img.width, x2)))
    y1, y2 = sorted((max(0, y1), min(img.height, y2)))
    if x2 <= x1 or y2 <= y1:
        raise ToolError(f"{op}: the box {nums[:4]} is empty inside a {img.width}x{img.height} image")
    return x1, y1, x2, y2


def _crop(img: Image.Image, text: str) -> Image.Image:
    return img.crop(_box(text, img, "crop"))


def _resize(img: Image.Image, text: str) -> Image.Image:
    pct = re.search(rf"({_NUM})\s*%", text)
    if pct:
        f = float(pct.group(1)) / 100
        size = (max(1, round(img.width * f)), max(1, round(img.height * f)))
    else:
        nums = _numbers(text)
        if len(nums) < 2:
            raise ToolError("resize needs a size, e.g. 'resize 320x240' or 'resize 50%'")
        size = (int(nums[0]), int(nums[1]))
    if min(size) < 1 or size[0] * size[1] > 64_000_000:
        raise ToolError(f"resize: size {size} is out of range")
    return img.resize(size, Image.Resampling.LANCZOS)


def _rotate(img: Image.Image, text: str) -> Image.Image:
    nums = _numbers(text)
    if not nums:
        raise ToolError("rotate needs an angle in degrees, e.g. 'rotate 90'")
    angle = -nums[0] if "clockwise" in text and "counter" not in text and "anti" not in text else nums[0]
    return img.rotate(angle, expand=True)


def _flip(img: Image.Image, text: str) -> Image.Image:
    if "vertical" in text or "upside" in text:
        return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _draw_box(img: Image.Image, text: str) -> Image.Image:
    box = _box(text, img, "draw box")
    out = img.copy()
    draw = ImageDraw.Draw(out)
    color = _color(_QUOTED.sub("", text.split("box", 1)[-1]), "red")
    width = max(2, min(img.size) // 150)
    draw.rectangle(box, outline=color, width=width)
    label = _QUOTED.search(text)
    if label:
        draw.text((box[0] + width, max(0, box[1] - 14)), label.group(1), fill=color, font=_font(12))
    return out


def _add_text(img: Image.Image, text: str) -> Image.Image:
    quoted = _QUOTED.search(text)
    if not quoted:
        raise ToolError('add text needs the text in quotes, e.g. \'add text "hello" at 10,10 red\'')
    rest = text[quoted.end():]
    nums = _numbers(rest)
    size = re.search(r"size\s*(\d+)", rest)
    x, y = (nums[0], nums[1]) if len(nums) >= 2 and not (size and len(nums) < 3) else (10, 10)
    out = img.copy()
    ImageDraw.Draw(out).text((x, y), quoted.group(1), fill=_color(rest, "red"),
                             font=_font(int(size.group(1)) if size else max(12, img.height // 20)))
    return out


def _blur(img: Image.Image, text: str) -> Image.Image:
    nums = _numbers(text)
    return img.filter(ImageFilter.GaussianBlur(min(nums[0], 100) if nums else 4))


def _grayscale(img: Image.Image, text: str) -> Image.Image:
    return img.convert("L").convert("RGB")


def _brightness(img: Image.Image, text: str) -> Image.Image:
    nums = _numbers(text)
    factor = nums[0] if nums else (0.6 if "dark" in text else 1.4)
    if not 0 <= factor <= 10:
        raise ToolError("brightness needs a factor between 0 and 10 (1 = unchanged)")
    return ImageEnhance.Brightness(img).enhance(factor)


# (keywords, operation, name) in the order they are recognized
_OPERATIONS: list[tuple[tuple[str, ...], Callable[[Image.Image, str], Image.Image], str]] = [
    (("draw box", "draw a box", "bounding box", "rectangle", "draw"), _draw_box, "box"),
    (("add text", "write", "text", "caption", "label"), _add_text, "text"),
    (("crop",), _crop, "crop"),
    (("resize", "scale"), _resize, "resize"),
    (("rotate",), _rotate, "rotate"),
    (("flip", "mirror"), _flip, "flip"),
    (("blur",), _blur, "blur"),
    (("grayscale", "greyscale", "gray", "grey", "black and white"), _grayscale, "gray"),
    (("brightness", "brighten", "darken", "brighter", "darker"), _brightness, "bright"),
]


def apply_instruction(img: Image.Image, instruction: str) -> tuple[Image.Image, list[str]]:
    """Apply each `;`-separated operation of an instruction in turn."""
    done: list[str] = []
    for clause in [c.strip() for c in instruction.split(";") if c.strip()]:
        lowered = clause.lower()
        for keywords, op, name in _OPERATIONS:
            if any(re.search(rf"\b{re.escape(k)}\b", lowered) for k in keywords):
                img = op(img, clause if name == "text" else lowered)
                done.append(name)
                break
        else:
            raise ToolError(
                f"image_edit does not know how to {clause!r}; it can: crop x1,y1,x2,y2; resize WxH or N%; "
                "rotate DEG; flip horizontal|vertical; draw box x1,y1,x2,y2 [color] [\"label\"]; "
                "add text \"TEXT\" at x,y [color]; blur [radius]; grayscale; brightness FACTOR"
            )
    if not done:
        raise ToolError("image_edit needs an instruction, e.g. 'crop 0,0,100,100'")
    return img, done


@tool
def image_edit(ctx: ToolContext, prompt: str, image_path: str) -> str:
    """Edit an image with an instruction: crop x1,y1,x2,y2; resize WxH or N%; rotate DEG; flip horizontal|vertical; draw box x1,y1,x2,y2 [color] ["label"]; add text "TEXT" at x,y [color]; blur [radius]; grayscale; brightness FACTOR (join several with ';'). Returns the path of the edited image.

    Args:
        prompt: the edit instruction
        image_path: path of the image to edit
    """
    path = ctx.input_path(image_path, what="image")
    width, height = image_size(path)
    if width * height > MAX_PIXELS:
        raise ToolError(f"image_edit: {path.name} is {width}x{height}, above its {MAX_PIXELS / 1e6:.0f} Mpixel "
                        "limit; make a smaller copy first (PIL: Image.reduce, or crop it)")
    img, done = apply_instruction(load_image(path), prompt)
    out = ctx.output_path(f"{Path(path).stem}_{'_'.join(done)}", ".png")
    img.save(out)
    return str(out)
