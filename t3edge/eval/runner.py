"""The resumable, shardable evaluation runner.

Each finished item is appended as one complete JSONL line (trajectory, prediction, verdict). A run
killed at any point (even SIGKILL mid-write) restarts where it stopped: finished items are read
back and skipped, a torn last line is ignored and its item runs again, so no item runs twice to
completion and none is lost. Shards (`i/n`) write their own files in the same folder and merge
into exactly the records of a single run. Several items may run at once (`jobs`), each in a
worker thread; only the runner's thread writes records.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
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
Solver = Callable[[Item, threading.Event], Solved]  # the event: stop now (see ItemCancelled)


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
    stopped: bool = False  # the caller's cancel event ended the run early

    @property
    def complete(self) -> bool:
        return self.finished == self.total


class ItemCancelled(T3Error):
    """A solver's answer to the cancel event: the item stopped unfinished (it is not recorded)."""


def results_path(folder: Path, shard: Shard | None) -> Path:
    return folder / (shard.results_name if shard else RESULTS)


def run_suite(suite: Suite, solve: Solver, folder: Path, *, shard: Shard | None = None,
              limit: int | None = None, fsync: bool = True, progress: bool = True,
              console: Console | None = None, jobs: int = 1, cancel: threading.Event | None = None) -> RunOutcome:
    """Run every selected item not yet finished in `folder` (by any shard), appending one record
    per item to this shard's results file, `jobs` items at a time (each in a worker thread).

    Records are written as items finish, so with several jobs in completion order; readers sort
    by dataset position. An item whose solver raises is not recorded (a rerun retries it); after
    MAX_CONSECUTIVE_FAILURES failures in a row the run stops with the last error. Setting `cancel`
    stops the running items and returns (`stopped`); a Ctrl-C does the same, then re-raises.
    Either way every item that finished is recorded first.
    """
    path = results_path(folder, shard)
    items = suite.selected(limit, shard)
    done = {r.id for r in read_records(result_files(folder))}
    todo = [it for it in items if it.id not in done]
    outcome = RunOutcome(finished=len(items) - len(todo), total=len(items))
    stop = cancel or threading.Event()
    waiting = iter(todo)
    running: dict[Future[tuple[Solved, float]], Item] = {}
    streak = 0
    with JsonlWriter(path, fsync=fsync) as writer, _progress(progress, console) as bar, \
            ThreadPoolExecutor(max(1, jobs), thread_name_prefix="eval-item") as pool:
        task_id = bar.add_task(f"{suite.benchmark} {shard.index}/{shard.count}" if shard else suite.benchmark,
                               total=len(items), completed=outcome.finished)

        def record(item: Item, solved: Solved, seconds: float) -> None:
            prediction = prediction_text(solved.trajectory.final_answer)
            answer = solved.trajectory.final_answer if suite.raw_answer else prediction
            writer.write(EvalRecord(
                benchmark=suite.benchmark, id=item.id, index=item.index, prediction=prediction,
                verdict=suite.score(item, answer, solved.tool_calls), tool_calls=solved.tool_calls,
                trajectory=solved.trajectory, seconds=seconds,
            ))
            outcome.finished += 1
            outcome.ran += 1
            bar.advance(task_id)

        def stop_and_keep_finished() -> None:
            """Cancel the running items, wait for them, and record those that finished anyway."""
            stop.set()
            for future in as_completed(list(running)):
                item = running.pop(future)
                if not future.cancelled() and future.exception() is None:
                    record(item, *future.result())

        try:
            while True:
                while len(running) < jobs and not stop.is_set() and (item := next(waiting, None)) is not None:
                    running[pool.submit(_timed, solve, item, stop)] = item
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = running.pop(future)
                    error = future.exception()
                    if error is None:
                        streak = 0
                        record(item, *future.result())
                    elif isinstance(error, (KeyboardInterrupt, SystemExit)):
                        raise error
                    elif not (stop.is_set() and isinstance(error, ItemCancelled)):
                        outcome.failed.append((item.id, f"{type(error).__name__}: {error}"))
                        streak += 1
                        bar.advance(task_id)
                        if streak >= MAX_CONSECUTIVE_FAILURES:
                            raise T3Error(
                                f"{streak} items in a row failed; last ({item.id}): {type(error).__name__}: {error}",
                                hint="fix the cause and run the same command again: finished items are kept",
                            ) from error
        except BaseException:
            stop_and_keep_finished()
            raise
    outcome.stopped = stop.is_set()
    return outcome


def _timed(solve: Solver, item: Item, cancel: threading.Event) -> tuple[Solved, float]:
    start = time.perf_counter()
    solved = solve(item, cancel)
    return solved, time.perf_counter() - start


def _progress(enabled: bool, console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console or Console(stderr=True), disable=not enabled, transient=False,
    )
