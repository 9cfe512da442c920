"""The trajectory schema: what synthesis writes, training reads, evaluation scores and the TUI keeps.

One pydantic schema (Task, Attachment, Step, Trajectory) and its JSONL reader (`t3edge.jsonl`
writes and reads the lines safely; `t3edge.mmtraj` bridges to the released MM-Traj record).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from t3edge.errors import T3Error
from t3edge.jsonl import BadLine, iter_jsonl

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
