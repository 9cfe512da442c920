"""Stage 3: make the files. Images are retrieved from the captioned image pool; other files are
written by code that the model writes, run in the agent's sandbox."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from synth.engine import RunContext, Step
from synth.errors import Rejected
from synth.image_pool import ImagePool
from synth.items import FileSpec, MadeFile, SynthItem
from synth.prompts import FILE_CODE_SYSTEM, IMAGE_TYPES, file_code_prompt
from synth.sandbox import run_file_code
from t3edge.backends.base import Message
from t3edge.errors import T3Error

STAGE = "files"
_CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(text: str) -> str:
    """The first fenced code block of a reply; Rejected(`no_code`) if there is none."""
    match = _CODE_BLOCK.search(text)
    code = match.group(1).strip() if match else ""
    if not code:
        raise Rejected("no_code", "the reply had no ```python block")
    return code


def retrieve_image(ctx: RunContext, pool: ImagePool, spec: FileSpec, folder: Path, used: set[str]) -> MadeFile:
    found = pool.best(spec.file_content, used)
    if found is None or found[1] < ctx.cfg.files.min_image_similarity:
        score = f"{found[1]:.3f}" if found else "none"
        raise Rejected("no_matching_image", f"{spec.name}: best similarity {score}")
    entry, score = found
    used.add(entry.path)
    source = pool.root / entry.path
    target = folder / f"{spec.name}{source.suffix.lower()}"
    shutil.copyfile(source, target)
    return MadeFile(name=spec.name, file_type=source.suffix.lower().lstrip("."), path=str(target),
                    source="retrieved", description=spec.file_content, caption=entry.caption,
                    score=round(score, 4))


async def generate_file(ctx: RunContext, spec: FileSpec, folder: Path) -> MadeFile:
    cfg = ctx.cfg.files
    target = folder / f"{spec.name}.{spec.file_type}"
    messages = [Message("system", FILE_CODE_SYSTEM),
                Message("user", file_code_prompt(spec.file_type, target.name, spec.file_content))]
    reply = await ctx.client.complete(STAGE, messages, temperature=cfg.temperature,
                                      max_tokens=cfg.max_tokens)
    code = extract_code(reply.text)
    error = await ctx.blocking(run_file_code, code, folder, cfg.code_timeout_s)
    if error is not None:
        raise Rejected("file_code_error", f"{spec.name}: {error[-300:]}")
    if not target.is_file() or target.stat().st_size == 0:
        raise Rejected("file_not_created", f"{spec.name}: the code did not write {target.name}")
    return MadeFile(name=spec.name, file_type=spec.file_type, path=str(target), source="generated",
                    description=spec.file_content)


async def make_files(ctx: RunContext, item: SynthItem) -> SynthItem:
    folder = ctx.store.files_dir(item.id)
    if folder.exists():  # left by a run killed mid-item
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    used: set[str] = set()
    made: list[MadeFile] = []
    try:
        for spec in item.file_specs:
            if spec.file_type in IMAGE_TYPES:
                made.append(retrieve_image(ctx, await image_pool(ctx), spec, folder, used))
            else:
                made.append(await generate_file(ctx, spec, folder))
    except Rejected:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return item.model_copy(update={"files": made})


async def image_pool(ctx: RunContext) -> ImagePool:
    """The captioned image pool, loaded once, on a worker thread, when a task first needs an image
    (a clear error if none is set)."""
    async with ctx.image_pool_lock:
        if ctx.image_pool is None:
            root = ctx.cfg.files.image_pool
            if root is None:
                raise T3Error("tasks need images but no image pool is set",
                              hint="index a folder with `t3edge synth index-images DIR` and set "
                                   "synth.files.image_pool = DIR")
            ctx.image_pool = await ctx.blocking(ImagePool.load, Path(root).expanduser())
    return ctx.image_pool


INPUT = "file_content"
STEP = Step(STAGE, make_files)
