"""The evaluation screen: choose benchmark, data, model, adapter and limit; watch the run item by
item; read the report and plot at the end."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

from pydantic import ValidationError
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Label,
    Markdown,
    ProgressBar,
    Select,
)

from t3edge.eval.records import EvalRecord
from t3edge.models import BackendKind
from tui.evaluation import (
    EvalFailed,
    EvalFinished,
    EvalProgress,
    EvalRequest,
    EvalStarted,
    run_evaluation,
)
from tui.widgets.preview import image_preview


def verdict_text(record: EvalRecord) -> Text:
    correct = getattr(record.verdict, "correct", None)
    if correct is None:
        return Text("–", style="dim")
    return Text("✓", style="green") if correct else Text("✗", style="red")


class EvaluateScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Back to chat")]

    def __init__(self, model: str, backend: BackendKind | None, adapter: str | None) -> None:
        super().__init__()
        self.model = model
        self.backend = backend
        self.adapter = adapter
        self.stop_event: threading.Event | None = None
        self.folder: Path | None = None
        self.shown: set[str] = set()

    def compose(self) -> ComposeResult:
        with Vertical(id="eval-form"):
            yield Label("Evaluate the agent", classes="dialog-title")
            with Horizontal(classes="form-row"):
                yield Select([("GTA", "gta"), ("GAIA", "gaia"), ("built-in tasks", "tasks")], value="gta",
                             allow_blank=False, id="benchmark")
                yield Input(placeholder="data folder (empty: the downloaded copy)", id="data")
            with Horizontal(classes="form-row"):
                yield Input(value=self.model, placeholder="model", id="model")
                yield Input(value=self.adapter or "", placeholder="adapter (optional)", id="adapter")
                yield Input(placeholder="limit", id="limit", type="integer")
                yield Button("Run", id="run", variant="primary")
                yield Button("Stop", id="stop", disabled=True)
        yield Label("", id="eval-status")
        yield ProgressBar(id="eval-progress", show_eta=True)
        with VerticalScroll(id="eval-body"):
            yield DataTable(id="eval-results", cursor_type="row", zebra_stripes=True)
            yield Vertical(id="eval-report")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("#", "item", "prediction", "correct", "steps", "seconds")

    @property
    def running(self) -> bool:
        return self.stop_event is not None

    def request(self) -> EvalRequest | None:
        limit = self.query_one("#limit", Input).value.strip()
        data = self.query_one("#data", Input).value.strip()
        try:
            return EvalRequest(
                benchmark=self.query_one("#benchmark", Select).value,  # type: ignore[arg-type]
                model=self.query_one("#model", Input).value.strip(),
                data=Path(data).expanduser() if data else None,
                backend=self.backend,
                adapter=self.query_one("#adapter", Input).value.strip() or None,
                limit=int(limit) if limit else None,
            )
        except (ValidationError, ValueError) as exc:
            self.notify(f"Check the form: {exc}", severity="error")
            return None

    @on(Button.Pressed, "#run")
    def start(self) -> None:
        request = self.request()
        if request is None or self.running:
            return
        if not request.model:
            self.notify("Give a model to evaluate.", severity="error")
            return
        self.stop_event = stop = threading.Event()
        self.shown.clear()
        self.query_one(DataTable).clear()
        self.query_one("#eval-report").remove_children()
        self.query_one("#run", Button).disabled = True
        self.query_one("#stop", Button).disabled = False
        self.set_status(f"Preparing {request.benchmark.upper()} with {request.model}…")
        self.run_worker(lambda: run_evaluation(self, request, stop), thread=True, group="eval",
                        name="evaluation", exit_on_error=False)

    @on(Button.Pressed, "#stop")
    def stop(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()
            self.set_status("Stopping: the running items are cancelled (finished items are kept)…")

    def action_close(self) -> None:
        if self.running:
            self.notify("An evaluation is running: press Stop first.", severity="warning")
            return
        self.dismiss(None)

    def set_status(self, text: str) -> None:
        self.query_one("#eval-status", Label).update(Content(text))

    # -- messages from the run -------------------------------------------------------------------

    def on_eval_started(self, message: EvalStarted) -> None:
        self.folder = message.folder
        self.query_one(ProgressBar).update(total=message.total, progress=len(message.records))
        self.add_rows(message.records)
        resumed = f" (resuming: {len(message.records)} already done)" if message.records else ""
        self.set_status(f"{message.total} items → {message.folder}{resumed}")

    def on_eval_progress(self, message: EvalProgress) -> None:
        self.add_rows(message.records)
        self.query_one(ProgressBar).update(progress=len(message.records))
        if message.current is not None:
            self.set_status(f"Running item {message.current}… ({len(message.records)} done)")

    def add_rows(self, records: list[EvalRecord]) -> None:
        table = self.query_one(DataTable)
        for r in records:
            if r.id in self.shown:
                continue
            self.shown.add(r.id)
            steps = len(r.trajectory.steps) if r.trajectory else 0
            table.add_row(str(r.index), Text(r.id), Text((r.prediction or "")[:60]), verdict_text(r),
                          str(steps), f"{r.seconds:.1f}", key=r.id)

    async def on_eval_finished(self, message: EvalFinished) -> None:
        self.end_run()
        state = "Stopped" if message.stopped else "Finished"
        failed = f"; {len(message.failed)} items failed (run again to retry them)" if message.failed else ""
        self.set_status(f"{state}. Results in {message.folder}{failed}")
        if message.summary is None:
            return
        body = self.query_one("#eval-report", Vertical)
        report = message.folder / "report.md"
        widgets = [Markdown(report.read_text(encoding="utf-8"))] if report.is_file() else []
        plot = message.folder / "plot.png"
        if plot.is_file():
            widgets.append(image_preview(plot))
        await body.mount_all(widgets)

    def on_eval_failed(self, message: EvalFailed) -> None:
        self.end_run()
        self.set_status(f"The evaluation failed: {message.error}")
        self.notify(message.error, severity="error", timeout=10)

    def end_run(self) -> None:
        self.stop_event = None
        self.query_one("#run", Button).disabled = False
        self.query_one("#stop", Button).disabled = True
