"""The built-in task suite as a benchmark (`t3edge eval tasks`): items from a task folder
(t3edge.tasks), scored by each task's own checker, with the tools it expects."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from t3edge.errors import BadInput
from t3edge.eval.items import ToolCall
from t3edge.tasks.checkers import check
from t3edge.tasks.generate import load_tasks, read_manifest
from t3edge.tasks.schema import TASKS_FILE, TaskRecord
from t3edge.trajectory import Task


class TaskItem(BaseModel):
    id: str
    index: int
    record: TaskRecord
    root: str

    @property
    def family(self) -> str:
        return self.record.family

    def task(self) -> Task:
        return self.record.task(self.root)


class TasksVerdict(BaseModel):
    """One task: its checker's verdict, and whether the run called the tools the task expects."""

    benchmark: Literal["tasks"] = "tasks"
    family: str
    held_out: bool = False
    answered: bool
    correct: bool
    expected_tools: list[str] = Field(default_factory=list)
    called_tools: list[str] = Field(default_factory=list)
    tools_recorded: bool = False
    tools_ok: bool | None = None  # None: the task expects no tool, or the calls were not recorded


def score_task(item: TaskItem, answer: Any, calls: list[ToolCall] | None) -> TasksVerdict:
    """`answer` is the final answer's value (or its text, for predictions made elsewhere)."""
    answered = answer is not None and not (isinstance(answer, str) and not answer.strip())
    called = list(dict.fromkeys(c.name for c in calls)) if calls is not None else []
    expected = item.record.tools
    tools_ok = None if calls is None or not expected else set(expected) <= set(called)
    return TasksVerdict(family=item.record.family, held_out=item.record.held_out, answered=answered,
                        correct=answered and check(item.record, answer), expected_tools=expected,
                        called_tools=called, tools_recorded=calls is not None, tools_ok=tools_ok)


def tasks_index(data: Path) -> Path:
    """The tasks.jsonl of a task folder (`data` itself may be that file)."""
    if data.is_file() and data.name == TASKS_FILE:
        return data
    return data / TASKS_FILE


def load_task_items(data: Path) -> list[TaskItem]:
    """The usable tasks of a folder; unusable records are reported (one warning) and left out."""
    folder = data.parent if data.is_file() and data.name == TASKS_FILE else data
    records, problems = load_tasks(folder)
    if problems:
        named = "; ".join(str(p) for p in problems[:3]) + (" ..." if len(problems) > 3 else "")
        warnings.warn(f"{folder}: {len(problems)} task record(s) left out: {named}", stacklevel=2)
    if not records:
        raise BadInput(f"the task folder {folder} has no usable tasks",
                       hint="remake it with: t3edge tasks make OUT --split test --n 50 --seed 0")
    root = str(folder.resolve())
    return [TaskItem(id=r.id, index=i, record=r, root=root) for i, r in enumerate(records)]


def task_split(data: Path) -> str | None:
    folder = data.parent if data.is_file() else data
    manifest = read_manifest(folder)
    return manifest.split if manifest else None
