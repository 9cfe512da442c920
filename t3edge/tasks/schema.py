"""The records of a task folder: `tasks.jsonl` (one TaskRecord a line) and `manifest.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr

from t3edge.trajectory import Attachment, Task

GENERATOR_VERSION = "2"
TASKS_FILE = "tasks.jsonl"
MANIFEST_FILE = "manifest.json"
FILES_DIR = "files"

Split = Literal["train", "test"]
CheckKind = Literal["number", "text", "set", "list", "size"]


class CheckSpec(BaseModel):
    """How an answer is compared with the key (t3edge.tasks.checkers).

    number: |answer - key| <= tolerance; text: equal after normalizing (case, spacing, quotes, a
    trailing full stop); set / list: the same normalized elements (any order / in order); size:
    the same two integers (width, height), written `160x120`, `(160, 120)` or `[160, 120]`.
    """

    kind: CheckKind
    tolerance: float = Field(0.0, ge=0)


class RefStep(BaseModel):
    """One step of a reference solution, as a model would write it."""

    thought: str
    code: str


class TaskRecord(BaseModel):
    id: str
    family: str
    split: Split
    held_out: bool = Field(False, description="the family is never in train (only in test)")
    query: str
    files: list[str] = Field(default_factory=list, description="paths relative to the task folder")
    answer: Any
    check: CheckSpec
    tools: list[str] = Field(default_factory=list, description="the tools the reference calls")
    reference: list[RefStep]
    values: list[str] = Field(default_factory=list,
                              description="the split-partitioned values in the files and the answer")

    _root: Path | None = PrivateAttr(default=None)

    def with_root(self, root: str | Path) -> TaskRecord:
        self._root = Path(root).resolve()
        return self

    @property
    def root(self) -> Path | None:
        return self._root

    def file_paths(self, root: str | Path | None = None) -> list[Path]:
        base = Path(root).resolve() if root is not None else self._root
        if base is None:
            raise ValueError(f"task {self.id}: its folder is not known; pass root=")
        return [base / f for f in self.files]

    def task(self, root: str | Path | None = None) -> Task:
        """The agent's Task, with absolute attachment paths."""
        return Task(id=self.id, query=self.query,
                    attachments=[Attachment.from_path(p) for p in self.file_paths(root)])


class Manifest(BaseModel):
    seed: int
    split: Split
    n: int
    families: list[str]
    held_out: list[str]
    generator_version: str = GENERATOR_VERSION
    made: int = 0
    per_family: dict[str, int] = Field(default_factory=dict)
    redrawn: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="per family, why draws were made again (and how often)")
    dropped: list[dict[str, str]] = Field(default_factory=list,
                                          description="tasks given up after too many failed verifications")


class TaskProblem(BaseModel):
    """A record of a task folder that cannot be used, and why."""

    line: int
    id: str | None = None
    reason: str

    def __str__(self) -> str:
        who = f" ({self.id})" if self.id else ""
        return f"line {self.line}{who}: {self.reason}"
