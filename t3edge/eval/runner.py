"""The resumable, shardable evaluation runner.

Each finished item is appended as one complete JSONL line (trajectory, prediction, verdict). A run
killed at any point (even SIGKILL mid-write) restarts where it stopped: finished items are read
back and skipped, a torn last line is ignored and its item runs again, so no item runs twice to
completion and none is lost. Shards (`i/n`) write their own files in the same folder and merge
into exactly the records of a single run. Several items may run at once (`jobs`), each in a
worker thread; only the runner's thread writes records.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)

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
    (it is only read) stops the running items and returns (`stopped`). A Ctrl-C does the same,
    then re-raises; a second Ctrl-C re-raises without waiting for the running items. Every item
    that finished before is recorded.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    items = suite.selected(limit, shard)
    done = {r.id for r in read_records(result_files(folder))}
    todo = [it for it in items if it.id not in done]
    outcome = RunOutcome(finished=len(items) - len(todo), total=len(items))
    console = console or Console(stderr=True)
    with JsonlWriter(results_path(folder, shard), fsync=fsync) as writer, _progress(progress, console) as bar:
        run = _Run(suite, solve, writer, outcome, bar, bar.add_task(
            f"{suite.benchmark} {shard.index}/{shard.count}" if shard else suite.benchmark,
            total=len(items), completed=outcome.finished))
        try:
            run.until_done(iter(todo), jobs, cancel)
        except KeyboardInterrupt:
            if run.running:
                console.print(f"stopping the {run.running} running item(s); finished items are kept "
                              "(Ctrl-C again to quit without waiting)", soft_wrap=True)
            run.stop_and_keep_finished()
            raise
        except BaseException:
            run.stop_and_keep_finished()
            raise
    outcome.stopped = run.stop.is_set()
    return outcome


@dataclass
class _Ended:
    """What a worker hands back: the item solved, or the error it raised."""

    item: Item
    solved: Solved | None
    seconds: float
    error: BaseException | None = None


class _Run:
    """One `run_suite` call: its worker threads, and the records only this thread writes."""

    def __init__(self, suite: Suite, solve: Solver, writer: JsonlWriter, outcome: RunOutcome, bar: Progress,
                 task_id: TaskID) -> None:
        self.suite, self.solve, self.writer, self.outcome, self.bar, self.task_id = (
            suite, solve, writer, outcome, bar, task_id)
        self.stop = threading.Event()  # what the running items see
        self.ended: queue.Queue[_Ended] = queue.Queue()
        self.running = 0
        self.unsettled: _Ended | None = None  # taken from the queue, not yet recorded
        self.streak = 0

    def until_done(self, todo: Iterator[Item], jobs: int, cancel: threading.Event | None) -> None:
        while True:
            if cancel is not None and cancel.is_set():
                self.stop.set()
            while self.running < jobs and not self.stop.is_set() and (item := next(todo, None)) is not None:
                threading.Thread(target=self._work, args=(item,), name=f"eval-{item.id}", daemon=True).start()
                self.running += 1
            if not self.running:
                return
            self._settle_next(self.stop.is_set())

    def stop_and_keep_finished(self) -> None:
        """Tell the running items to stop, wait for them, and record those that finished anyway."""
        self.stop.set()
        while self.running or self.unsettled is not None:
            self._settle_next(True)

    def _work(self, item: Item) -> None:
        """In a worker thread (a daemon: a second Ctrl-C does not wait for it)."""
        start = time.perf_counter()
        try:
            solved = self.solve(item, self.stop)
        except BaseException as exc:  # handed to the runner's thread, which decides
            self.ended.put(_Ended(item, None, time.perf_counter() - start, exc))
        else:
            self.ended.put(_Ended(item, solved, time.perf_counter() - start))

    def _settle_next(self, stopping: bool) -> None:
        """Take the next ended item (polling, so that a Ctrl-C is seen), and record it or count
        its failure; past the failure limit, raise (unless already stopping)."""
        if self.unsettled is None:
            try:
                self.unsettled = self.ended.get(timeout=0.2)
            except queue.Empty:
                return
            self.running -= 1
        end, error = self.unsettled, self.unsettled.error
        if end.solved is not None:
            self._record(end.item, end.solved, end.seconds)
            self.streak = 0
        else:
            self.unsettled = None
        if error is None or (stopping and isinstance(error, (ItemCancelled, KeyboardInterrupt))):
            return
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise error
        self.outcome.failed.append((end.item.id, f"{type(error).__name__}: {error}"))
        self.streak += 1
        self.bar.advance(self.task_id)
        if self.streak >= MAX_CONSECUTIVE_FAILURES and not stopping:
            raise T3Error(f"{self.streak} items in a row failed; last ({end.item.id}): {type(error).__name__}: {error}",
                          hint="fix the cause and run the same command again: finished items are kept") from error

    def _record(self, item: Item, solved: Solved, seconds: float) -> None:
        prediction = prediction_text(solved.trajectory.final_answer)
        answer = solved.trajectory.final_answer if self.suite.raw_answer else prediction
        record = EvalRecord(
            benchmark=self.suite.benchmark, id=item.id, index=item.index, prediction=prediction,
            verdict=self.suite.score(item, answer, solved.tool_calls), tool_calls=solved.tool_calls,
            trajectory=solved.trajectory, seconds=seconds,
        )
        self.writer.write(record)
        self.unsettled = None  # at once: an interrupt from here on must not write it again
        self.outcome.finished += 1
        self.outcome.ran += 1
        self.bar.advance(self.task_id)


def _progress(enabled: bool, console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, disable=not enabled, transient=False,
    )
