"""The resumable, shardable evaluation runner.

Each finished item is appended as one complete JSONL line (trajectory, prediction, verdict). A run
killed at any point (even SIGKILL mid-write) restarts where it stopped: finished items are read
back and skipped, a torn last line is ignored and its item runs again, so no item runs twice to
completion and none is lost. Shards (`i/n`) write their own files in the same folder and merge
into exactly the records of a single run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from t3edge.errors import T3Error
from t3edge.eval.gaia import GAIAItem
from t3edge.eval.gaia_score import score_gaia
from t3edge.eval.gta import GTAItem
from t3edge.eval.gta_score import score_gta
from t3edge.eval.items import Benchmark, ToolCall
from t3edge.eval.records import RESULTS, EvalRecord, Shard, Verdict, read_records, result_files
from t3edge.eval.tasks import TaskItem, score_task
from t3edge.eval.similarity import Similarity
from t3edge.jsonl import JsonlWriter
from t3edge.trajectory import Trajectory

MAX_CONSECUTIVE_FAILURES = 3


@dataclass
class Solved:
    """What solving one task produced: the trajectory, and the benchmark-named tool calls made
    (None when they were not recorded)."""

    trajectory: Trajectory
    tool_calls: list[ToolCall] | None = None


Item = GTAItem | GAIAItem | TaskItem
Solver = Callable[[Item], Solved]


@dataclass
class Suite:
    """A benchmark's items and how to score a prediction for one of them (`raw_answer`: the
    scorer gets the final answer's value, not its text)."""

    benchmark: Benchmark
    items: Sequence[Item]
    score: Callable[[Any, Any, list[ToolCall] | None], Verdict]
    raw_answer: bool = False

    def selected(self, limit: int | None = None, shard: Shard | None = None) -> list[Item]:
        items = list(self.items[:limit] if limit is not None else self.items)
        return [it for pos, it in enumerate(items) if shard is None or shard.holds(pos)]


def gta_suite(items: Sequence[GTAItem], similarity: Similarity | None, unavailable: str = "") -> Suite:
    return Suite("gta", items, lambda item, pred, calls: score_gta(
        item, pred, calls, similarity, no_similarity_reason=unavailable))


def gaia_suite(items: Sequence[GAIAItem]) -> Suite:
    return Suite("gaia", items, lambda item, pred, calls: score_gaia(item, pred))


def tasks_suite(items: Sequence[TaskItem]) -> Suite:
    return Suite("tasks", items, score_task, raw_answer=True)


def prediction_text(answer: Any) -> str | None:
    """The final answer as the scorers read it (None when the run gave none)."""
    if answer is None:
        return None
    return answer if isinstance(answer, str) else str(answer)


@dataclass
class RunOutcome:
    finished: int
    total: int
    ran: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.finished == self.total


def results_path(folder: Path, shard: Shard | None) -> Path:
    return folder / (shard.results_name if shard else RESULTS)


def run_suite(suite: Suite, solve: Solver, folder: Path, *, shard: Shard | None = None,
              limit: int | None = None, fsync: bool = True, progress: bool = True,
              console: Console | None = None) -> RunOutcome:
    """Run every selected item not yet finished in `folder` (by any shard), appending one record
    per item to this shard's results file.

    An item whose solver raises is not recorded (a rerun retries it); after
    MAX_CONSECUTIVE_FAILURES failures in a row the run stops with the last error.
    """
    path = results_path(folder, shard)
    items = suite.selected(limit, shard)
    done = {r.id for r in read_records(result_files(folder))}
    todo = [it for it in items if it.id not in done]
    outcome = RunOutcome(finished=len(items) - len(todo), total=len(items))
    streak = 0
    with JsonlWriter(path, fsync=fsync) as writer, _progress(progress, console) as bar:
        task_id = bar.add_task(f"{suite.benchmark} {shard.index}/{shard.count}" if shard else suite.benchmark,
                               total=len(items), completed=outcome.finished)
        for item in todo:
            start = time.perf_counter()
            try:
                solved = solve(item)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - one broken item must not end a long run
                outcome.failed.append((item.id, f"{type(exc).__name__}: {exc}"))
                streak += 1
                if streak >= MAX_CONSECUTIVE_FAILURES:
                    raise T3Error(f"{streak} items in a row failed; last ({item.id}): {type(exc).__name__}: {exc}",
                                  hint="fix the cause and run the same command again: finished items are kept") from exc
                bar.advance(task_id)
                continue
            streak = 0
            prediction = prediction_text(solved.trajectory.final_answer)
            answer = solved.trajectory.final_answer if suite.raw_answer else prediction
            record = EvalRecord(
                benchmark=suite.benchmark, id=item.id, index=item.index, prediction=prediction,
                verdict=suite.score(item, answer, solved.tool_calls), tool_calls=solved.tool_calls,
                trajectory=solved.trajectory, seconds=time.perf_counter() - start,
            )
            writer.write(record)
            outcome.finished += 1
            outcome.ran += 1
            bar.advance(task_id)
    return outcome


def _progress(enabled: bool, console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console or Console(stderr=True), disable=not enabled, transient=False,
    )
