"""The offline teacher: each task's reference solution run through the real agent loop.

The reference steps are the model's outputs (a ReplayBackend); the sandbox and the tools are the
real ones, so every observation in a kept trajectory is what the tools really printed. A
trajectory is kept when it ended with final_answer, its answer passes the task's check, and no
step's code failed; the others go to `dropped.jsonl` beside the output with the reason. The system
prompt recorded is the one the student sees at inference: built for the student's context
length and vision (default SmolLM2-135M: 8192 tokens, text-only, so the compact text-only prompt).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t3edge.agent.config import AgentConfig
from t3edge.tasks.checkers import check
from t3edge.tasks.generate import reference_outputs
from t3edge.tasks.schema import TaskRecord
from t3edge.jsonl import JsonlWriter, iter_jsonl
from t3edge.trajectory import Trajectory, Verdict

STUDENT_CONTEXT = 8192  # SmolLM2-135M-Instruct
DROPPED = "dropped.jsonl"


@dataclass
class TeachReport:
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # already in the output or in dropped.jsonl (a resumed run)
    families: dict[str, dict[str, int]] = field(default_factory=dict)
    out: Path | None = None
    dropped_path: Path | None = None
    seconds: float = 0.0

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def keep_rate(self, family: str) -> float | None:
        counts = self.families.get(family, {})
        done = counts.get("kept", 0) + counts.get("dropped", 0)
        return counts.get("kept", 0) / done if done else None


def dropped_path(out_jsonl: Path) -> Path:
    return Path(out_jsonl).parent / DROPPED


def _done_ids(out_jsonl: Path, dropped: Path) -> set[str]:
    done: set[str] = set()
    if out_jsonl.is_file():
        for obj in iter_jsonl(out_jsonl, on_bad_line="skip"):
            task = obj.get("task")
            if isinstance(task, dict) and isinstance(task.get("id"), str):
                done.add(task["id"])
    if dropped.is_file():
        for obj in iter_jsonl(dropped, on_bad_line="skip"):
            if isinstance(obj.get("id"), str):
                done.add(obj["id"])
    return done


def judge(record: TaskRecord, trajectory: Trajectory) -> tuple[str | None, str]:
    """(None, "") when the trajectory is a keeper, else (reason, detail)."""
    failed = next((s for s in trajectory.steps if s.error is not None), None)
    if failed is not None:
        return "step_error", f"step {failed.index}: {failed.error.splitlines()[-1] if failed.error else ''}"[:300]
    if trajectory.ended != "final_answer":
        return "no_final_answer", f"the run ended with {trajectory.ended}: {trajectory.error or ''}"[:300]
    if not check(record, trajectory.final_answer):
        return "wrong_answer", f"answered {trajectory.final_answer!r}, the key is {record.answer!r}"[:300]
    return None, ""


def teach_one(record: TaskRecord, folder: Path, workspaces: Path, config: AgentConfig, *,
              context_length: int | None = STUDENT_CONTEXT, vision: bool = False) -> Trajectory:
    """Run one task's reference through the agent (the real sandbox and default tools), in a
    clean folder under `workspaces`."""
    from t3edge.backends.replay import ReplayBackend
    from t3edge.chat import Chat
    from t3edge.tools import default_tools

    backend = ReplayBackend(reference_outputs(record))
    backend.context_length = context_length
    backend.supports_images = vision
    chat = Chat(backend, tools=default_tools(), config=config.model_copy(update={"workspace": workspaces}))
    trajectory = chat.run_to_end(record.task(folder))
    trajectory.meta.update({"source": "t3edge.tasks.teach", "family": record.family, "split": record.split,
                            "held_out": record.held_out, "answer_key": record.answer})
    return trajectory


def teach(records: Sequence[TaskRecord], folder: str | Path, out_jsonl: str | Path, *,
          agent_config: AgentConfig | None = None, context_length: int | None = STUDENT_CONTEXT,
          vision: bool = False, workspaces: Path | None = None,
          progress: Callable[[int, int], None] | None = None, fsync: bool = False) -> TeachReport:
    """Run every task's reference through the real agent loop; keep the trajectories that end
    with a checked final answer (to `out_jsonl`), drop the others with a reason (to its sibling
    `dropped.jsonl`). Resumable: tasks already in either file are skipped.

    `context_length` and `vision` describe the student model (they choose the system prompt the
    trajectories record); `workspaces` (default: `<out stem>-workspaces` beside the output) holds
    each task's working folder.
    """
    from t3edge.agent import load_agent_config

    start = time.perf_counter()
    folder = Path(folder)
    out_jsonl = Path(out_jsonl)
    dropped_file = dropped_path(out_jsonl)
    config = agent_config or load_agent_config()
    root = workspaces or out_jsonl.parent / f"{out_jsonl.stem}-workspaces"
    done = _done_ids(out_jsonl, dropped_file)
    report = TeachReport(out=out_jsonl, dropped_path=dropped_file)
    reasons: Counter[str] = Counter()
    with JsonlWriter(out_jsonl, fsync=fsync) as kept, JsonlWriter(dropped_file, fsync=fsync) as dropped:
        for i, record in enumerate(records):
            counts = report.families.setdefault(record.family, {"kept": 0, "dropped": 0})
            if record.id in done:
                report.skipped += 1
            else:
                try:
                    trajectory = teach_one(record, folder, root, config,
                                           context_length=context_length, vision=vision)
                    reason, detail = judge(record, trajectory)
                except Exception as exc:  # noqa: BLE001 - a broken task is dropped, not the whole run
                    trajectory, reason, detail = None, "error", f"{type(exc).__name__}: {exc}"[:300]
                if reason is None and trajectory is not None:
                    trajectory.verdicts["trajectory"] = Verdict(
                        correct=True, thought="the final answer passes the task's checker")
                    kept.write(trajectory)
                    report.kept += 1
                    counts["kept"] += 1
                else:
                    dropped.write({"id": record.id, "family": record.family, "reason": reason, "detail": detail})
                    reasons[reason or "error"] += 1
                    counts["dropped"] += 1
                done.add(record.id)
            if progress is not None:
                progress(i + 1, len(records))
    report.dropped = dict(reasons)
    report.seconds = time.perf_counter() - start
    return report


def summary_rows(report: TeachReport) -> list[dict[str, Any]]:
    """Per family: kept, dropped and the keep rate (of the tasks run now)."""
    rows = []
    for family, counts in sorted(report.families.items()):
        rate = report.keep_rate(family)
        rows.append({"family": family, "kept": counts["kept"], "dropped": counts["dropped"],
                     "keep_rate": None if rate is None else round(100 * rate, 1)})
    return rows
