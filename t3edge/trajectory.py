"""The trajectory schema: what synthesis writes, training reads, evaluation scores and the TUI keeps.

One pydantic schema (Task, Attachment, Step, Trajectory), an append-safe JSONL writer and reader,
and a lossless bridge to the released MM-Traj training record (README, "Architecture").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from t3edge.errors import BadInput, T3Error
from t3edge.protocol import parse_feedback, parse_model_output, task_message

SCHEMA_VERSION = 1

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
_KINDS = {
    **{ext: "image" for ext in IMAGE_EXTENSIONS},
    ".mp3": "audio", ".wav": "audio", ".m4a": "audio", ".flac": "audio",
    ".mp4": "video", ".mov": "video", ".avi": "video", ".mkv": "video",
}

StepKind = Literal[
    "action",  # a Thought/Code step whose code ran (it may still have raised: see `error`)
    "parse_error",  # the model's output had no runnable code block
    "final_answer_request",  # the extra call made when the step limit was hit
    "repeat",  # code identical to an earlier step's: not run again, the model was told so
    "rejected",  # the user did not allow the code to run (agent.approve = "ask")
]
EndReason = Literal[
    "final_answer", "step_limit", "error_limit", "loop", "cancelled", "backend_error", "context_full"
]


def safe_name(text: str, fallback: str = "task") -> str:
    """`text` as a file or folder name: runs of other characters than letters, digits, `_.-`
    become `_` (how a task id names its working folder)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or fallback


def file_kind(path: str | Path) -> str:
    """The attachment kind of a path: `image`, `audio`, `video`, or its extension (`pdf`, `xlsx`...)."""
    ext = Path(path).suffix.lower()
    return _KINDS.get(ext, ext.lstrip(".") or "file")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Attachment(BaseModel):
    """A file given with a task. `placeholder` keeps MM-Traj's image tag (`<image>`, `<image_00>`)."""

    path: str
    kind: str
    sha256: str | None = None
    placeholder: str | None = None

    @classmethod
    def from_path(cls, path: str | Path, *, hash_file: bool = True) -> Attachment:
        p = Path(path)
        if not p.is_file():
            raise T3Error(f"attachment not found: {p}", hint="check the path (it must be a file)")
        return cls(path=str(p), kind=file_kind(p), sha256=sha256_file(p) if hash_file else None)

    @property
    def is_image(self) -> bool:
        return self.kind == "image"


class Task(BaseModel):
    id: str
    query: str
    attachments: list[Attachment] = Field(default_factory=list)

    @property
    def images(self) -> list[Attachment]:
        return [a for a in self.attachments if a.is_image]


class Step(BaseModel):
    """One model call of a run and what came of it.

    `raw_output` is the assistant message exactly as it goes back into the conversation;
    `feedback` is the user message that followed it (observation or error), exactly as sent.
    """

    index: int
    kind: StepKind = "action"
    raw_output: str
    thought: str | None = None
    code: str | None = None
    observation: str | None = None
    error: str | None = None
    feedback: str | None = None
    produced_files: list[str] = Field(default_factory=list)
    tools_called: list[str] = Field(default_factory=list)
    tokens_in: int = 0
    tokens_cached: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    approval: Literal["approved", "edited", "rejected"] | None = Field(
        None, description="the user's decision when code approval was on (None: not asked)")
    proposed_code: str | None = Field(None, description="the model's code, when the user edited it")


class Verdict(BaseModel):
    """A verifier's judgement (`query_file` or `trajectory` in synthesis)."""

    correct: bool | None = None
    thought: str = ""
    raw: Any = None


class SandboxReport(BaseModel):
    """What confinement the run's sandbox got (Linux)."""

    landlock_abi: int = 0
    seccomp: bool = False
    capabilities_dropped: bool = False
    limits_refused: list[str] = Field(default_factory=list)


RUN_FACTS = ("workspace", "continues", "error", "sandbox")  # typed fields that older records kept in `meta`


class Trajectory(BaseModel):
    schema_version: int = SCHEMA_VERSION
    task: Task
    system_prompt: str | None = None
    task_message: str | None = None
    steps: list[Step] = Field(default_factory=list)
    final_answer: Any = None
    ended: EndReason | None = None
    images_shown: bool = Field(True, description="the task's images went to the model as pixels "
                                                 "(false for a text-only model: only as paths)")
    model: str | None = None
    backend: str | None = None
    format: Literal["free", "constrained"] | None = Field(
        None, description="how the steps were decoded: constrained by the step grammar, or free "
                          "(None: recorded before formats existed)")
    verdicts: dict[str, Verdict] = Field(default_factory=dict)
    started_at: float | None = None
    seconds: float = 0.0
    workspace: str | None = Field(None, description="the run's working folder (a follow-up's is its chat's)")
    continues: list[str] = Field(default_factory=list, description="task ids of the earlier runs of the "
                                                                   "chat this run continues, in order")
    error: str | None = Field(None, description="why the run ended early (backend error, context, loop)")
    sandbox: SandboxReport | None = None
    meta: dict[str, Any] = Field(default_factory=dict, description="anything else (e.g. MM-Traj fields)")

    @model_validator(mode="before")
    @classmethod
    def _facts_from_meta(cls, data: Any) -> Any:
        """Records written before the run facts were fields kept them in `meta`."""
        if isinstance(data, dict) and isinstance(data.get("meta"), dict) and any(k in data["meta"] for k in RUN_FACTS):
            data = dict(data)
            meta = dict(data["meta"])
            for key in RUN_FACTS:
                if key in meta:
                    data.setdefault(key, meta.pop(key))
            data["meta"] = meta
        return data

    @property
    def tokens(self) -> dict[str, int]:
        return {
            "in": sum(s.tokens_in for s in self.steps),
            "cached": sum(s.tokens_cached for s in self.steps),
            "out": sum(s.tokens_out for s in self.steps),
        }


# ---------------------------------------------------------------------------------------------
# Append-safe JSONL
# ---------------------------------------------------------------------------------------------


class JsonlWriter:
    """Appends one JSON object per line; each record is one `write` of a complete line.

    A writer killed mid-record leaves at most one partial last line. Opening a file whose last
    line is partial first ends that line, so the next record never fuses with it; readers report
    and skip it.
    """

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._fh = open(self.path, "ab")
        if self._fh.tell() > 0 and not _ends_with_newline(self.path):
            self._fh.write(b"\n")
            self._fh.flush()

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        data = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
        line = json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


class BadLine(UserWarning):
    """A JSONL line that could not be read; it is skipped."""


def iter_jsonl(path: str | Path, *, on_bad_line: str = "warn") -> Iterator[dict[str, Any]]:
    """Yield each JSON object of a JSONL file; bad lines are reported (warning) and skipped.

    `on_bad_line`: "warn" (default), "skip" (silently) or "raise".
    """
    p = Path(path)
    if not p.is_file():
        raise T3Error(f"no such JSONL file: {p}")
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                if on_bad_line == "raise":
                    raise BadInput(f"{p}:{lineno}: unreadable line ({exc})",
                                   hint="each line must be one JSON object; fix or remove that line") from exc
                msg = f"{p}:{lineno}: skipped an unreadable line ({exc}); a run killed mid-write leaves one"
                if on_bad_line == "warn":
                    warnings.warn(msg, BadLine, stacklevel=2)
                continue
            yield obj


def read_trajectories(path: str | Path, *, on_bad_line: str = "warn") -> Iterator[Trajectory]:
    """Read our trajectory JSONL; a line that is JSON but not a Trajectory is reported and skipped."""
    for obj in iter_jsonl(path, on_bad_line=on_bad_line):
        try:
            yield Trajectory.model_validate(obj)
        except ValidationError as exc:
            first = exc.errors()[0]
            why = f"{'.'.join(str(p) for p in first['loc']) or 'record'}: {first['msg']}"
            if on_bad_line == "raise":
                raise T3Error(f"{path}: not a trajectory record ({why})") from exc
            if on_bad_line == "warn":
                warnings.warn(f"{path}: skipped a record that is not a trajectory ({why})", BadLine, stacklevel=2)


# ---------------------------------------------------------------------------------------------
# The released MM-Traj training record
# ---------------------------------------------------------------------------------------------


class MMTrajTurn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class MMTrajRecord(BaseModel):
    """The released MM-Traj training record (Hugging Face dataset PengxiangLi/MAT)."""

    model_config = {"populate_by_name": True, "extra": "allow"}

    id: str
    image: str | dict[str, str] | None = None
    system_prompt: str | None = Field(default=None, alias="system-prompt")
    answer: Any = None
    conversations: list[MMTrajTurn]
    correct: Any = None
    traj_verification: Any = None

    def dump(self) -> dict[str, Any]:
        """The record as the released files spell it (`system-prompt`, unset keys left out)."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


def _strip_image_tags(text: str, tags: list[str]) -> str:
    for tag in tags:
        prefix = tag + "\n"
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def from_mmtraj(record: MMTrajRecord | dict[str, Any], *, root: str | Path | None = None) -> Trajectory:
    """Read a released MM-Traj record into a Trajectory (`root` prefixes relative image paths)."""
    rec = record if isinstance(record, MMTrajRecord) else MMTrajRecord.model_validate(record)
    if not rec.conversations or rec.conversations[0].role != "user":
        raise T3Error(f"MM-Traj record {rec.id}: conversations must start with a user turn")

    if rec.image is None:
        images: list[tuple[str, str]] = []
    elif isinstance(rec.image, str):
        images = [("<image>", rec.image)]
    else:
        images = list(rec.image.items())
    attachments = [
        Attachment(path=str(Path(root) / p) if root else p, kind="image", placeholder=tag)
        for tag, p in images
    ]

    first = rec.conversations[0].content
    body = _strip_image_tags(first, [tag for tag, _ in images])
    query = body.split("\n", 1)[0]
    query = query[len("Task: "):] if query.startswith("Task: ") else query

    steps: list[Step] = []
    turns = rec.conversations[1:]
    i = 0
    while i < len(turns):
        turn = turns[i]
        if turn.role != "assistant":
            raise T3Error(f"MM-Traj record {rec.id}: turn {i + 1} should be the assistant's")
        feedback = turns[i + 1].content if i + 1 < len(turns) else None
        steps.append(_step_from_texts(len(steps), turn.content, feedback))
        i += 2

    verdicts: dict[str, Verdict] = {}
    fields = {MMTrajRecord.model_fields[f].alias or f for f in rec.model_fields_set}
    if "correct" in fields or "traj_verification" in fields:
        verdicts["trajectory"] = Verdict(
            correct=_yes_no(rec.correct), thought=_verification_thought(rec.traj_verification),
            raw={"correct": rec.correct, "traj_verification": rec.traj_verification},
        )
    extra = {k: v for k, v in (rec.model_extra or {}).items()}
    return Trajectory(
        task=Task(id=rec.id, query=query, attachments=attachments),
        system_prompt=rec.system_prompt,
        task_message=body,
        steps=steps,
        verdicts=verdicts,
        final_answer=rec.answer,
        ended="final_answer" if rec.answer is not None else None,
        meta={
            "source": "mmtraj",
            "mmtraj_fields": sorted(fields | set(extra)),
            "mmtraj_image_form": "none" if rec.image is None else type(rec.image).__name__,
            "mmtraj_extra": extra,
            "mmtraj_first_turn": first,
        },
    )


def _step_from_texts(index: int, raw: str, feedback: str | None) -> Step:
    parsed = parse_model_output(raw)
    observation, error = parse_feedback(feedback) if feedback is not None else (None, None)
    return Step(
        index=index,
        kind="action" if parsed.code is not None else "parse_error",
        raw_output=raw,
        thought=parsed.thought,
        code=parsed.code,
        observation=observation,
        error=error,
        feedback=feedback,
    )


def _yes_no(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"yes", "true", "no", "false"}:
        return value.strip().lower() in {"yes", "true"}
    return None


def _verification_thought(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("thought", ""))
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return str(parsed.get("thought", "")) if isinstance(parsed, dict) else value
    return ""


def to_mmtraj(traj: Trajectory, *, root: str | Path | None = None) -> MMTrajRecord:
    """Write a Trajectory as a released MM-Traj record (paths made relative to `root` if given).

    A trajectory read by `from_mmtraj` comes back exactly as it was read.
    """
    meta = traj.meta
    images = traj.task.images
    paths = [_relative(a.path, root) for a in images]
    form = meta.get("mmtraj_image_form")
    if form == "none" or not images and form is None:
        image: str | dict[str, str] | None = None
        tags: list[str] = []
    elif form == "str" or (form is None and len(images) == 1):
        image = paths[0]
        tags = [images[0].placeholder or "<image>"]
    else:
        tags = [a.placeholder or f"<image_{j:02d}>" for j, a in enumerate(images)]
        image = dict(zip(tags, paths))

    first = meta.get("mmtraj_first_turn")
    if first is None:
        body = traj.task_message or task_message(traj.task.query, [a.path for a in traj.task.attachments])
        first = "".join(tag + "\n" for tag in tags) + body
    conversations = [MMTrajTurn(role="user", content=first)]
    for step in traj.steps:
        if step.kind == "final_answer_request":
            continue
        conversations.append(MMTrajTurn(role="assistant", content=step.raw_output))
        if step.feedback is not None:
            conversations.append(MMTrajTurn(role="user", content=step.feedback))

    data: dict[str, Any] = {
        "id": traj.task.id,
        "image": image,
        "system-prompt": traj.system_prompt,
        "answer": traj.final_answer,
        "conversations": [t.model_dump() for t in conversations],
    }
    verdict = traj.verdicts.get("trajectory")
    if verdict is not None:
        raw = verdict.raw if isinstance(verdict.raw, dict) else {}
        data["correct"] = raw.get("correct", "yes" if verdict.correct else "no")
        data["traj_verification"] = raw.get(
            "traj_verification", json.dumps({"thought": verdict.thought, "correct": data["correct"]})
        )
    data.update(meta.get("mmtraj_extra", {}))
    fields = meta.get("mmtraj_fields")
    if fields is not None:
        data = {k: v for k, v in data.items() if k in fields}
    return MMTrajRecord.model_validate(data)


def _relative(path: str, root: str | Path | None) -> str:
    if root is None:
        return path
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
