"""The thread side of the evaluation screen: the evaluation runner of `t3edge eval`, reporting
progress and finished items as Textual messages.

The run goes to the same folder `t3edge eval gta|gaia` would use for these settings, so a run
stopped here resumes from the command line and the other way round. Stopping cancels the items
running (they run again on resume); finished items are kept.
"""

from __future__ import annotations

import dataclasses
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


def run_evaluation(target: MessagePump, request: EvalRequest, stop: threading.Event) -> None:
    """Run (or resume) an evaluation, posting EvalStarted, EvalProgress per item, then EvalFinished."""
    from t3edge.eval.config import load_eval_config
    from t3edge.eval.jobs import prepare_run, report, run_job
    from t3edge.eval.records import read_records, result_files

    try:
        cfg = load_eval_config()
        prepared = prepare_run(request.benchmark, request.model, cfg, data=request.data,
                               backend=request.backend, adapter=request.adapter, limit=request.limit)
        folder, suite, solve = prepared.folder, prepared.suite, prepared.solve
        folder.mkdir(parents=True, exist_ok=True)

        def finished() -> list[EvalRecord]:
            return sorted(read_records(result_files(folder)), key=lambda r: r.index)

        target.post_message(EvalStarted(folder, len(suite.selected(request.limit)), finished()))

        def tracked(item: Any, cancel: threading.Event) -> Any:
            target.post_message(EvalProgress(finished(), getattr(item, "id", None)))
            return solve(item, cancel)

        outcome, summary = run_job(dataclasses.replace(prepared, solve=tracked), progress=False, fsync=cfg.fsync,
                                   cancel=stop)
        if summary is None and finished():
            summary = report(folder)
        target.post_message(EvalProgress(finished(), None))
        target.post_message(EvalFinished(folder, summary, outcome.failed, outcome.stopped))
    except Exception as exc:  # noqa: BLE001 - the screen shows any failure and stays usable
        target.post_message(EvalFailed(describe(exc)))

