"""The image pool: a folder of images with one caption each, indexed in DIR/t3edge-images.jsonl.

Tasks get real images, retrieved by the similarity between a file description and the captions
(never generated). Captions come from a captions file (JSONL with `image` and `caption`, or CSV/TSV
with those columns) or are written by the model, image by image, resumably.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from synth.errors import Rejected
from synth.prompts import CAPTION_PROMPT
from synth.similarity import embed
from t3edge.backends.base import ImagePart, Message, TextPart
from t3edge.errors import BadInput, T3Error
from t3edge.jsonl import JsonlWriter, iter_jsonl
from t3edge.trajectory import IMAGE_EXTENSIONS

INDEX_NAME = "t3edge-images.jsonl"
STAGE = "index_images"


class PoolImage(BaseModel):
    path: str  # relative to the pool folder
    caption: str


def pool_images(root: Path) -> list[Path]:
    """Every image file under `root`, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def read_index(root: Path) -> list[PoolImage]:
    path = root / INDEX_NAME
    if not path.is_file():
        return []
    return [PoolImage.model_validate(r) for r in iter_jsonl(path, on_bad_line="skip")]


def read_captions(path: Path) -> dict[str, str]:
    """image (relative path or file name) -> caption, from JSONL, CSV or TSV."""
    if not path.is_file():
        raise BadInput(f"captions file not found: {path}")
    if path.suffix.lower() == ".jsonl":
        rows = list(iter_jsonl(path))
    else:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    out: dict[str, str] = {}
    for row in rows:
        image, caption = row.get("image"), row.get("caption")
        if not image or not caption:
            raise BadInput(f"{path}: every row needs `image` and `caption` (got {sorted(row)})")
        out[str(image)] = str(caption).strip()
    return out


class ImagePool:
    """Captions embedded once; `best` finds the closest unused image for a description."""

    def __init__(self, root: Path, entries: list[PoolImage]) -> None:
        if not entries:
            raise T3Error(f"the image pool {root} has no indexed images",
                          hint=f"run: t3edge synth index-images {root}")
        self.root = root
        self.entries = entries
        self._vectors = embed([e.caption for e in entries])

    @classmethod
    def load(cls, root: Path) -> ImagePool:
        if not root.is_dir():
            raise T3Error(f"image pool folder not found: {root}", hint="set synth.files.image_pool")
        return cls(root, read_index(root))

    def best(self, description: str, exclude: set[str]) -> tuple[PoolImage, float] | None:
        sims = self._vectors @ embed([description])[0]
        for index in np.argsort(-sims, kind="stable"):
            entry = self.entries[int(index)]
            if entry.path not in exclude:
                return entry, float(sims[index])
        return None


async def index_pool(root: Path, *, captions: Path | None,
                     caption_with: Callable[[list[Message]], Awaitable[str]] | None,
                     progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Add every image of `root` not yet in the index; returns (added, failed).

    With `captions`, captions come from the file (images it does not name are skipped); otherwise
    `caption_with(messages)` captions each image (concurrently; a failed image is retried on the
    next call).
    """
    if not root.is_dir():
        raise BadInput(f"not a folder: {root}")
    if captions is None and caption_with is None:
        raise T3Error("nothing to caption with", hint="give a captions file or a model")
    known = {e.path for e in read_index(root)}
    given = read_captions(captions) if captions is not None else None
    todo = [p for p in pool_images(root) if p.relative_to(root).as_posix() not in known]
    counts = {"added": 0, "failed": 0, "done": 0}

    async def one(image: Path, writer: JsonlWriter) -> None:
        rel = image.relative_to(root).as_posix()
        try:
            if given is not None:
                caption = given.get(rel) or given.get(image.name) or ""
            else:
                assert caption_with is not None
                messages = [Message("user", [ImagePart(str(image)), TextPart(CAPTION_PROMPT)])]
                caption = (await caption_with(messages)).strip()
        except Rejected:
            counts["failed"] += 1
            caption = ""
        if caption:
            writer.write(PoolImage(path=rel, caption=" ".join(caption.split())))
            counts["added"] += 1
        counts["done"] += 1
        if progress is not None:
            progress(counts["done"], len(todo))

    with JsonlWriter(root / INDEX_NAME) as writer:
        await asyncio.gather(*(one(p, writer) for p in todo))
    return counts["added"], counts["failed"]
