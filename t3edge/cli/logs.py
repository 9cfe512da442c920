"""`t3edge logs`: the chats of `t3edge run` and of the terminal app, from the one chat store."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from t3edge.chats import default_store, trajectory_markdown



@click.group()
def logs() -> None:
    """The chats kept in <data dir>/chats.db (every `t3edge run` and every chat of the app)."""


@logs.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=30, show_default=True)
def list_chats(limit: int) -> None:
    """The most recent chats."""
    store = default_store()
    chats = store.list()[:limit]
    if not chats:
        click.echo(f"no chats yet in {store.path}")
        return
    table = Table("chat", "title", "model", "runs", "last used")
    for chat in chats:
        table.add_row(chat.id, escape(chat.title), escape(chat.model or "-"), str(chat.runs),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.updated_at)))
    Console(highlight=False).print(table)


@logs.command("show")
@click.argument("chat")
def show(chat: str) -> None:
    """Every run of CHAT (a chat id, a run's task id, or 'last') with its steps."""
    store = default_store()
    chat_id = store.find(chat)
    info = store.get(chat_id)
    text = "\n".join([f"# {info.title}\n", f"chat {chat_id}, model {info.model or 'unknown'}\n",
                      *(trajectory_markdown(t) for t in store.runs(chat_id))])
    Console().print(Markdown(text))


@logs.command("search")
@click.argument("words", nargs=-1, required=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def search(words: tuple[str, ...], limit: int) -> None:
    """Runs whose question, thoughts, code, observations, errors or answer hold all WORDS
    (whole words, any case; end a word with * to match its prefix)."""
    hits = default_store().search(" ".join(words), limit=limit)
    if not hits:
        click.echo("no run matches")
        return
    console = Console(highlight=False)
    for hit in hits:
        console.print(f"[bold]{hit.chat_id}[/bold] {escape(hit.title)} [dim](task {hit.task_id})[/dim]")
        console.print(f"  {escape(hit.snippet)}")


@logs.command("export")
@click.argument("chat")
@click.option("--format", "fmt", type=click.Choice(["md", "jsonl"]), default="md", show_default=True,
              help="Markdown to read, or trajectory JSONL (the format every t3edge command reads).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The file to write (default: <chat id>.<format> here).")
def export(chat: str, fmt: str, out: Path | None) -> None:
    """Write CHAT (a chat id, a run's task id, or 'last') to a file."""
    store = default_store()
    chat_id = store.find(chat)
    path = out or Path(f"{chat_id}.{fmt}")
    written = store.export_markdown(chat_id, path) if fmt == "md" else store.export_jsonl(chat_id, path)
    click.echo(f"wrote {written}")
