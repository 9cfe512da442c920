"""The thread side of the evaluation screen: the evaluation runner of `t3edge eval`, reporting
progress and finished items as Textual messages.

The run goes to the same folder `t3edge eval gta|gaia` would use for these settings, so a run
stopped here resumes from the command line and the other way round. Stopping takes effect
between items (finished items are kept).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from textual.message import Message
from textual.message_pump import MessagePump

from t3edge.eval.items import Benchmark
from t3edge.eval.records import EvalRecord
from t3edge.models import BackendKind
from tui.runner import describe



class EvalRequest(BaseModel):
    benchmark: Benchmark
    model: str
    data: Path | None = None
    backend: BackendKind | None = None
    adapter: str | None = None
    limit: int | None = None


class EvalStarted(Message):
    def __init__(self, folder: Path, total: int, records: list[EvalRecord]) -> None:
        super().__init__()
        self.folder = folder
        self.total = total
        self.records = records


class EvalProgress(Message):
    """An item finished (records: every finished item so far) or is starting (`current`)."""

    def __init__(self, records: list[EvalRecord], current: str | None) -> None:
        super().__init__()
        self.records = records
        self.current = current


class EvalFinished(Message):
    def __init__(self, folder: Path, summary: dict[str, Any] | None, failed: list[tuple[str, str]],
                 stopped: bool) -> None:
        super().__init__()
        self.folder = folder
        self.summary = summary
        self.failed = failed
        self.stopped = stopped


class EvalFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class StopEvaluation(KeyboardInterrupt):
    """Raised between items to end a run the user stopped (the runner passes interrupts through)."""


def run_evaluation(target: MessagePump, request: EvalRequest, stop: threading.Event) -> None:
    """Run (or resume) an evaluation, posting EvalStarted, EvalProgress per item, then EvalFinished."""
    from t3edge.eval.config import load_eval_config
    from t3edge.eval.jobs import prepare_run, report, run_job
    from t3edge.eval.records import read_records, result_files

    try:
        cfg = load_eval_config()
        prepared = prepare_run(request.benchmark, request.model, cfg, data=request.data,
                               backend=request.backend, adapter=request.adapter, limit=request.limit)
        folder, suite, info, solve = prepared.folder, prepared.suite, prepared.info, prepared.solve
        folder.mkdir(parents=True, exist_ok=True)

        def finished() -> list[EvalRecord]:
            return sorted(read_records(result_files(folder)), key=lambda r: r.index)

        target.post_message(EvalStarted(folder, len(suite.selected(request.limit)), finished()))

        def tracked(item: Any) -> Any:
            if stop.is_set():
                raise StopEvaluation
            target.post_message(EvalProgress(finished(), getattr(item, "id", None)))
            return solve(item)

        stopped = False
        try:
            outcome, summary = run_job(suite, tracked, folder, info, progress=False, fsync=cfg.fsync)
            failed = outcome.failed
        except StopEvaluation:
            stopped, summary, failed = True, None, []
        if summary is None and finished():
            summary = report(folder)
        target.post_message(EvalProgress(finished(), None))
        target.post_message(EvalFinished(folder, summary, failed, stopped))
    except Exception as exc:  # noqa: BLE001 - the screen shows any failure and stays usable
        target.post_message(EvalFailed(describe(exc)))

