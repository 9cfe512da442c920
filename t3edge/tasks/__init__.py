"""A built-in, verifiable task suite made offline by code (docs/tasks.md).

Task families over files the generator writes (CSV, XLSX, DOCX, PDF, JSON, PNG), each task with
its exact answer and checker, the tools it needs and a reference solution; an offline teacher that
runs the references through the real agent loop; evaluation is `t3edge eval tasks`.
"""

from __future__ import annotations

from t3edge.tasks.checkers import check
from t3edge.tasks.families import FAMILIES, HELD_OUT
from t3edge.tasks.generate import load_tasks, make_tasks, read_manifest, reference_outputs
from t3edge.tasks.schema import CheckSpec, Manifest, RefStep, TaskProblem, TaskRecord

__all__ = [
    "FAMILIES", "HELD_OUT", "CheckSpec", "Manifest", "RefStep", "TaskProblem", "TaskRecord", "TeachReport",
    "check", "load_tasks", "make_tasks", "read_manifest", "reference_outputs", "teach",
]


def __getattr__(name: str):  # the teacher pulls in the agent loop: only when used
    if name in ("teach", "TeachReport"):
        from t3edge.tasks import teacher

        return getattr(teacher, name)
    raise AttributeError(name)
