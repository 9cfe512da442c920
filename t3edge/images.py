"""The one image policy: every image is loaded and resized here, once, before any backend or the
trainer sees it.

mlx-vlm stretches an image to its token grid while llama.cpp letterboxes it and rounds the other
way, so the same photo would become different image tokens on each backend (README, "One image policy").
Resizing first to sides that are multiples of patch x merge, within the pixel limits and with at
least `min_tokens` merged tokens, makes every backend's own resize a no-op.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, Field

from t3edge.errors import BadInput


class ImagePolicy(BaseModel):
    patch_size: int = 14
    merge_size: int = 2
    min_pixels: int = 3136
    max_pixels: int = Field(1024 * 28 * 28, description="cap on pixels per image (memory guard)")
    min_tokens: int = Field(8, description="llama.cpp forces at least 8 merged tokens")

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    @classmethod
    def for_model(cls, model_dir: str | Path, *, max_pixels: int | None = None) -> ImagePolicy:
        """The policy of a Hugging Face model folder (its preprocessor_config.json), capped."""
        policy = cls()
        cfg_path = Path(model_dir) / "preprocessor_config.json"
        if cfg_path.is_file():
            cfg = json.loads(cfg_path.read_text())
            size = cfg.get("size") or {}
            policy = cls(
                patch_size=int(cfg.get("patch_size", policy.patch_size)),
                merge_size=int(cfg.get("merge_size", policy.merge_size)),
                min_pixels=int(cfg.get("min_pixels", size.get("shortest_edge", policy.min_pixels))),
                max_pixels=int(cfg.get("max_pixels", size.get("longest_edge", policy.max_pixels))),
            )
        if max_pixels is not None:
            policy.max_pixels = min(policy.max_pixels, max_pixels)
        return policy

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the policy: multiples of `factor`, within the pixel limits."""
        f = self.factor
        lo = max(self.min_pixels, self.min_tokens * f * f)
        hi = max(self.max_pixels, lo)
        h = max(f, round(height / f) * f)  # round() is half-to-even, as the HF processor
        w = max(f, round(width / f) * f)
        if h * w > hi:
            beta = math.sqrt(height * width / hi)
            h = max(f, math.floor(height / beta / f) * f)
            w = max(f, math.floor(width / beta / f) * f)
        elif h * w < lo:
            beta = math.sqrt(lo / (height * width))
            h = math.ceil(height * beta / f) * f
            w = math.ceil(width * beta / f) * f
        return w, h

    def tokens(self, width: int, height: int) -> int:
        """Merged image tokens an image of this size becomes."""
        w, h = self.target_size(width, height)
        return (w // self.factor) * (h // self.factor)


def load_image(path: str | Path) -> Image.Image:
    """Open an image file fully, applying its EXIF orientation; a clear error if it can't be read."""
    p = _checked(path)
    try:
        with Image.open(p) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _unreadable(p, exc) from exc


MAX_DECODE_PIXELS = 150_000_000  # images with more pixels are refused from the header (tools)
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that turn the image by 90 degrees


def _checked(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise BadInput(f"image not found: {p}", hint="check the path")
    if not p.is_file():
        raise BadInput(f"not a file: {p}", hint="give the path of an image file")
    return p


def _unreadable(p: Path, exc: Exception) -> BadInput:
    return BadInput(f"cannot read image {p}: {exc}",
                    hint="the file is corrupt or not an image (png, jpg, webp, bmp, gif, tiff)")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as shown (EXIF orientation applied), read from the header only."""
    p = _checked(path)
    try:
        with Image.open(p) as img:
            width, height = img.size
            turned = img.getexif().get(0x0112) in _SWAPS_SIDES
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _unreadable(p, exc) from exc
    return (height, width) if turned else (width, height)


def load_image_within(path: str | Path, max_pixels: int) -> tuple[Image.Image, tuple[int, int]]:
    """An RGB image of at most `max_pixels` (resized, proportions kept) and its original size.

    The size is checked from the header first: above MAX_DECODE_PIXELS the image is refused
    before anything is decoded. A JPEG is decoded at a reduced scale (`Image.draft`); other
    formats are decoded once and reduced at once.
    """
    p = _checked(path)
    try:
        with Image.open(p) as img:
            width, height = img.size
            if width * height > MAX_DECODE_PIXELS:
                raise BadInput(f"image {p.name} is {width}x{height} ({width * height / 1e6:.0f} Mpixels), above "
                               f"the {MAX_DECODE_PIXELS / 1e6:.0f} Mpixel limit of the tools",
                               hint="make a smaller copy first (PIL: Image.reduce or thumbnail)")
            target = (width, height)
            if width * height > max_pixels:
                scale = math.sqrt(max_pixels / (width * height))
                target = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
                img.draft("RGB", target)  # JPEG: decoded at 1/2, 1/4 or 1/8 scale; others: no-op
            img.load()
            small = img if img.size == target else img.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
            oriented = ImageOps.exif_transpose(small)
            rgb = oriented.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _unreadable(p, exc) from exc
    turned = rgb.size != small.size
    return rgb, ((height, width) if turned else (width, height))


def normalize_image(img: Image.Image, policy: ImagePolicy) -> Image.Image:
    """RGB, resized (bicubic) to the policy's target size; returned unchanged if already there."""
    img = img.convert("RGB") if img.mode != "RGB" else img
    size = policy.target_size(*img.size)
    return img if size == img.size else img.resize(size, Image.Resampling.BICUBIC)
