"""`t3edge run "task" --file a.jpg`: run the agent once, streaming each step to the terminal."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax

from t3edge.agent import load_agent_config
from t3edge.cli.approve import terminal_approver
from t3edge.agent.events import (
    AgentEvent,
    CodeParsed,
    FinalAnswer,
    Notice,
    ObservationEvent,
    ParseFailed,
    RunFinished,
    StepError,
    StepStarted,
    TokenDelta,
)
from t3edge.chats import ChatStore, default_store, store_path
from t3edge.errors import BadInput
from t3edge.jsonl import JsonlWriter
from t3edge.trajectory import Trajectory


def _show(console: Console, event: AgentEvent) -> None:
    """Render one event; model output is always shown as text, never as markup."""
    if isinstance(event, StepStarted):
        console.rule(f"step {event.index}", style="dim")
    elif isinstance(event, CodeParsed):
        if event.thought:
            console.print(f"[bold]Thought:[/bold] {escape(event.thought)}")
        console.print(Syntax(event.code, "python", theme="ansi_dark", line_numbers=False))
    elif isinstance(event, ObservationEvent):
        console.print(Panel(escape(event.text.strip() or "(nothing printed)"), title="observation",
                            title_align="left", border_style="cyan"))
        for path in event.produced_files:
            console.print(f"[cyan]file:[/cyan] {escape(path)}")
    elif isinstance(event, ParseFailed):
        console.print(f"[yellow]no code ({event.problem}):[/yellow] {escape(event.message)}")
    elif isinstance(event, StepError):
        console.print(Panel(escape(event.error.strip()), title="error", title_align="left",
                            border_style="red"))
    elif isinstance(event, Notice):
        console.print(f"[yellow]note:[/yellow] {escape(event.text)}")
    elif isinstance(event, FinalAnswer):
        console.print(Panel(escape(json.dumps(event.answer, ensure_ascii=False, default=str)
                                   if not isinstance(event.answer, str) else event.answer),
                            title="answer", title_align="left", border_style="green"))


@click.command()
@click.argument("query")
@click.option("--file", "files", multiple=True, type=click.Path(dir_okay=False),
              help="Attach a file (image, pdf, docx, xlsx, csv...); repeatable.")
@click.option("--model", "model", default=None,
              help="Registry name, local folder, .gguf file, URL or replay:FILE (default: configured).")
@click.option("--backend", "backend", type=click.Choice(["mlx", "gguf"]), default=None,
              help="Force MLX or llama.cpp for a registry model.")
@click.option("--adapter", default=None, help="LoRA adapter to apply.")
@click.option("--max-steps", type=int, default=None, help="Step limit (default from config: 8).")
@click.option("--web", is_flag=True, default=None, help="Let ask_search_agent search the web.")
@click.option("--approve", type=click.Choice(["never", "ask"]), default=None,
              help="ask: show each code block and run, edit or reject it before it runs (default from config: never).")
@click.option("--format", "step_format", type=click.Choice(["free", "constrained"]), default=None,
              help="Decode each step in the Thought/Code format by grammar, or freely (default from config: constrained).")
@click.option("--workspace", type=click.Path(file_okay=False), default=None,
              help="Working folder for files the code writes (default: a new folder under the data dir).")
@click.option("--json", "as_json", is_flag=True, help="Print the trajectory as JSON instead of the steps.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also append the trajectory to this JSONL file (every run is kept in the chat store).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="An extra agent TOML config file.")
@click.option("--continue", "continue_id", default=None, metavar="CHAT",
              help="Ask a follow-up in an earlier chat (of this command or the app): its chat id, "
                   "the task id of one of its runs, or 'last'.")
def run(query: str, files: tuple[str, ...], model: str | None, backend: str | None,
        adapter: str | None, max_steps: int | None, web: bool | None, approve: str | None, step_format: str | None,
        workspace: str | None, as_json: bool, out: str | None, config_file: str | None,
        continue_id: str | None) -> None:
    """Run the agent on QUERY with the attached files, streaming each step."""
    from t3edge.chat import Chat, new_task, prepare_model
    from t3edge.loading import load_backend

    config = load_agent_config({"max_steps": max_steps, "web": web, "approve": approve, "format": step_format},
                               file=config_file)
    task = new_task(query, files)  # a bad image fails here, before any model loads
    store = _open_store()  # before the run, so a finished run always has somewhere to go
    if continue_id:
        store.find(continue_id)  # an unknown chat fails before the model loads
    writer = _open_writer(Path(out)) if out else None
    console = Console(stderr=as_json, highlight=False)
    model = prepare_model(model, backend)  # type: ignore[arg-type]
    with console.status(f"loading {escape(model)}...", spinner="dots"):
        loaded = load_backend(model, backend=backend, adapter=adapter)  # type: ignore[arg-type]
    cancel = threading.Event()
    options = {"config": config, "workspace": Path(workspace) if workspace else None,
               "approver": terminal_approver(console, cancel)}
    chat = Chat.resume(loaded, store, continue_id, **options) if continue_id else Chat(loaded, store=store, **options)
    problem = chat.problem(task)
    if problem is not None:
        loaded.close()
        raise BadInput(f"this question cannot continue chat {chat.chat_id}: {problem}",
                       hint="ask it without --continue, to start a new chat")
    agent = chat.agent()
    if (click.get_current_context().find_root().obj or {}).get("debug"):
        count = loaded.count_tokens(agent.system_prompt())
        console.print(f"[dim]system prompt: {agent.prompt_style()}, "
                      f"{count if count is not None else '?'} tokens of a {loaded.context_length or '?'}-token context[/dim]")
    trajectory: Trajectory | None = None
    status = console.status("", spinner="dots")
    generated = 0
    previous_handler = signal.signal(signal.SIGINT, _first_interrupt_cancels(cancel))
    try:
        for event in chat.run(task, cancel):
            if isinstance(event, RunFinished):
                trajectory = event.trajectory
            elif as_json:
                continue
            elif isinstance(event, TokenDelta):
                generated += len(event.text)
                status.update(f"step {event.index}: the model is writing ({generated} characters)")
            else:
                if isinstance(event, StepStarted):
                    generated = 0
                    status.update(f"step {event.index}: the model is thinking")
                    _show(console, event)
                    status.start()
                    continue
                status.stop()
                _show(console, event)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        status.stop()
        loaded.close()
    assert trajectory is not None
    chat_id = chat.chat_id
    store.close()
    if writer is not None:
        with writer:
            writer.write(trajectory)
    saved = f"{store.path} (chat {chat_id})" + (f" and {out}" if out else "")
    if as_json:
        click.echo(trajectory.model_dump_json(indent=2))
        _exit_on_failure(trajectory, saved)
        return
    tokens = trajectory.tokens
    console.print(
        f"[dim]ended: {trajectory.ended} | steps: {len(trajectory.steps)} | "
        f"tokens in/cached/out: {tokens['in']}/{tokens['cached']}/{tokens['out']} | "
        f"{trajectory.seconds:.1f} s[/dim]"
    )
    if trajectory.ended not in ("final_answer", "cancelled", "backend_error"):  # those two: below
        reason = trajectory.error or ""
        console.print(f"[yellow]no final answer ({trajectory.ended}){': ' + escape(reason) if reason else ''}[/yellow]")
    console.print(f"trajectory saved to {escape(saved)}, task {task.id}; "
                  f"files in {escape(trajectory.workspace or '')}")
    console.print(f"[dim]follow up: t3edge run --continue {chat_id} \"...\"  (or in the app: "
                  f"t3edge chat --session {chat_id})[/dim]")
    _exit_on_failure(trajectory, saved)


def _open_store() -> ChatStore:
    try:
        return default_store()
    except (OSError, sqlite3.Error) as exc:
        raise BadInput(f"cannot open the chat store {store_path()}: {exc}",
                       hint="check that the data folder is writable, or set T3EDGE_DATA_DIR") from exc


def _open_writer(path: Path) -> JsonlWriter:
    try:
        return JsonlWriter(path)
    except OSError as exc:
        raise BadInput(f"cannot write trajectories to {path}: {exc.strerror or exc}",
                       hint="give a writable file with --out") from exc


def _first_interrupt_cancels(cancel: threading.Event) -> Callable[[int, FrameType | None], None]:
    """A SIGINT handler: the first Ctrl-C stops the run cleanly (its trajectory is saved as
    cancelled), a second one quits at once."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        click.echo("stopping the run and saving its trajectory (Ctrl-C again to quit at once)", err=True)

    return handler


def _exit_on_failure(trajectory: Trajectory, path: str) -> None:
    """Exit non-zero when the run did not finish on its own: 130 when interrupted, 1 when the model
    or an input failed (the trajectory is saved either way)."""
    if trajectory.ended == "cancelled":
        click.echo(f"interrupted; the partial trajectory is in {path}", err=True)
        raise SystemExit(130)
    if trajectory.ended == "backend_error":
        click.secho(f"error: {trajectory.error or 'the model failed'} "
                    f"(the trajectory is saved in {path})", fg="red", err=True)
        raise SystemExit(1)
