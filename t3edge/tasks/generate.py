"""Making and reading task folders.

A task folder holds `tasks.jsonl` (one TaskRecord a line), `manifest.json` (how it was made) and
`files/<task id>/...` (each task's attachments). `make_tasks` is deterministic: the same seed,
split, n and families give the same files, byte for byte, and the same answers.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from t3edge.errors import T3Error
from t3edge.protocol import format_step
from t3edge.tasks.checkers import key_problem
from t3edge.tasks.families import FAMILIES, HELD_OUT, Draft, Retry
from t3edge.tasks.schema import (
    FILES_DIR, GENERATOR_VERSION, MANIFEST_FILE, TASKS_FILE, Manifest, RefStep, Split, TaskProblem, TaskRecord,
)
from t3edge.tasks.splits import split_of

MAX_ATTEMPTS = 25
_MAKE_HINT = "make one with: t3edge tasks make OUT --split test --n 50 --seed 0"


def family_names(split: Split, families: Sequence[str] | None = None) -> list[str]:
    """The families a split is made of: all of them for test, all but the held-out ones for train."""
    if families is None:
        return [f for f in FAMILIES if split == "test" or f not in HELD_OUT]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise T3Error(f"unknown task family {unknown[0]!r}", hint=f"the families are: {', '.join(FAMILIES)}")
    held = [f for f in families if f in HELD_OUT]
    if split == "train" and held:
        raise T3Error(f"{held[0]} is held out of train (it is only made for test)",
                      hint=f"held-out families: {', '.join(HELD_OUT)}")
    return list(dict.fromkeys(families))


def task_rng(seed: int, split: str, family: str, k: int) -> random.Random:
    """The generator of task k of a family: its own stream, so tasks do not depend on each other."""
    return random.Random(f"t3edge-tasks:{GENERATOR_VERSION}:{seed}:{split}:{family}:{k}")


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise T3Error(f"{out} is a file, not a folder", hint="give a new or empty folder for the tasks")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise T3Error(f"{out} is not empty and is not a task folder",
                      hint="give a new or empty folder (an existing task folder is remade in place)")
    if (out / FILES_DIR).exists():
        shutil.rmtree(out / FILES_DIR)
    for name in (TASKS_FILE, MANIFEST_FILE):
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _attempt(family: str, rng: random.Random, split: Split, folder: Path, verify: bool) -> Draft:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    spec = FAMILIES[family]
    draft = spec.make(rng, split, folder)
    wrong = [v for v in draft.values if split_of(v) != split]
    if wrong:
        raise Retry(f"value {wrong[0]!r} belongs to the other split")
    written = sorted(p.name for p in folder.iterdir())
    if written != sorted(draft.files):
        raise Retry(f"the files written ({written}) are not the task's files ({draft.files})")
    if verify and spec.verify is not None:
        try:
            problem = spec.verify(folder, draft)
        except T3Error as exc:
            problem = str(exc)
        if problem:
            raise Retry(problem)
    return draft


def make_tasks(out: Path, split: Split, n: int, seed: int, families: list[str] | None = None, *,
               verify: bool = True, progress: Callable[[int, int], None] | None = None) -> list[TaskRecord]:
    """Write `n` tasks of `split` into `out` (tasks.jsonl, manifest.json, files/<id>/...).

    Families take turns in order (task i is of family i mod len(families)). Each task draws from
    its own seeded generator; a draw whose values fall in the other split, or whose files the real
    tools do not read back to the answer (`verify`), is drawn again, up to MAX_ATTEMPTS times,
    then dropped (listed in the manifest).
    """
    if split not in ("train", "test"):
        raise T3Error(f"unknown split {split!r}", hint="train or test")
    if n < 1:
        raise T3Error("n must be at least 1")
    names = family_names(split, families)
    out = Path(out)
    _prepare_out(out)
    records: list[TaskRecord] = []
    dropped: list[dict[str, str]] = []
    redrawn: dict[str, dict[str, int]] = {}
    for i in range(n):
        family = names[i % len(names)]
        k = i // len(names)
        task_id = f"{split}-{family}-{k:04d}"
        folder = out / FILES_DIR / task_id
        rng = task_rng(seed, split, family, k)
        why = ""
        for _ in range(MAX_ATTEMPTS):
            try:
                draft = _attempt(family, rng, split, folder, verify)
            except Retry as exc:
                why = str(exc)
                kind = _retry_kind(why)
                counts = redrawn.setdefault(family, {})
                counts[kind] = counts.get(kind, 0) + 1
                continue
            record = TaskRecord(
                id=task_id, family=family, split=split, held_out=family in HELD_OUT, query=draft.query,
                files=[f"{FILES_DIR}/{task_id}/{name}" for name in draft.files], answer=draft.answer,
                check=draft.check, tools=draft.tools,
                reference=[RefStep(thought=t, code=c) for t, c in draft.steps], values=draft.values,
            ).with_root(out)
            problem = key_problem(record)
            if problem:
                why = problem
                continue
            records.append(record)
            break
        else:
            shutil.rmtree(folder, ignore_errors=True)
            dropped.append({"id": task_id, "family": family, "reason": why})
        if progress is not None:
            progress(i + 1, n)
    tmp = out / (TASKS_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(record.model_dump_json() + "\n")
    tmp.replace(out / TASKS_FILE)
    per_family = {f: sum(r.family == f for r in records) for f in names}
    manifest = Manifest(seed=seed, split=split, n=n, families=names, held_out=[f for f in names if f in HELD_OUT],
                        made=len(records), per_family=per_family, redrawn=redrawn, dropped=dropped)
    (out / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return records


def _retry_kind(why: str) -> str:
    """A short name for a redraw's cause (the manifest counts them)."""
    if "other split" in why:
        return "split"
    if why.startswith(("ocr", "facedetection", "image_edit")) or " is not in the text" in why:
        return "tools_disagree"
    return "invalid"


def read_manifest(folder: Path) -> Manifest | None:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, ValueError):
        return None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    return f"field {where!r}: {first['msg']}"


def load_tasks(folder: str | Path) -> tuple[list[TaskRecord], list[TaskProblem]]:
    """The usable records of a task folder, and the problems found (a line that is not JSON or
    not a task record, an answer key its own check rejects, a missing attachment, a repeated id).
    Problems are counted and named, never raised; a folder without tasks.jsonl is a T3Error."""
    root = Path(folder)
    index = root / TASKS_FILE
    if not root.is_dir():
        raise T3Error(f"task folder not found: {root}" if not root.exists() else f"{root} is a file, not a task folder",
                      hint=_MAKE_HINT)
    if not index.is_file():
        raise T3Error(f"{root} is not a task folder (no {TASKS_FILE})", hint=_MAKE_HINT)
    root = root.resolve()
    records: list[TaskRecord] = []
    problems: list[TaskProblem] = []
    seen: set[str] = set()
    with open(index, "rb") as fh:
        lines = fh.read().split(b"\n")
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj: Any = json.loads(raw)
        except ValueError as exc:
            problems.append(TaskProblem(line=lineno, reason=f"not JSON ({exc})"))
            continue
        task_id = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
        if not isinstance(obj, dict):
            problems.append(TaskProblem(line=lineno, reason="not a JSON object"))
            continue
        try:
            record = TaskRecord.model_validate(obj).with_root(root)
        except ValidationError as exc:
            problems.append(TaskProblem(line=lineno, id=task_id, reason=f"not a task record ({_first_error(exc)})"))
            continue
        problem = _record_problem(record, root, seen)
        if problem:
            problems.append(TaskProblem(line=lineno, id=record.id, reason=problem))
            continue
        seen.add(record.id)
        records.append(record)
    return records, problems


def _record_problem(record: TaskRecord, root: Path, seen: set[str]) -> str | None:
    if record.id in seen:
        return "the id is used by an earlier line"
    if not record.reference:
        return "no reference steps"
    bad_key = key_problem(record)
    if bad_key:
        return f"corrupt answer key: {bad_key}"
    for name in record.files:
        path = (root / name).resolve()
        if Path(name).is_absolute() or root not in path.parents:
            return f"the file {name} is outside the task folder"
        if not path.is_file():
            return f"the file {name} is missing"
    return None


def reference_outputs(record: TaskRecord) -> list[str]:
    """The reference steps as a model writes them (the protocol's Thought/Code format)."""
    return [format_step(step.thought, step.code) for step in record.reference]
