"""`t3edge tasks`: make the built-in verifiable task suite, check a task folder, and teach (run the
reference solutions through the real agent loop into training trajectories). docs/tasks.md."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


def _console() -> Console:
    return Console(highlight=False)


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)


@click.group(name="tasks")
def tasks_group() -> None:
    """The built-in verifiable tasks: make a split, check a folder, teach from the references."""


@tasks_group.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--split", type=click.Choice(["train", "test"]), required=True,
              help="train (no held-out family) or test (every family).")
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="How many tasks.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same files and answers.")
@click.option("--family", "families", multiple=True, help="Only these families (repeatable; default: all of the split's).")
@click.option("--no-verify", is_flag=True, help="Do not check OCR / faces / edits / documents with the real tools.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def make(out: Path, split: str, n: int, seed: int, families: tuple[str, ...], no_verify: bool,
         no_progress: bool) -> None:
    """Write N tasks of a split into OUT (tasks.jsonl, manifest.json, files/<id>/...)."""
    from t3edge.tasks import make_tasks, read_manifest
    from t3edge.tasks.generate import family_names

    family_names(split, list(families) or None)  # type: ignore[arg-type]  # a bad family fails before the bar
    console = _console()
    with _progress(not no_progress) as bar:
        job = bar.add_task(f"tasks {split}", total=n)
        records = make_tasks(out, split, n, seed, list(families) or None,  # type: ignore[arg-type]
                             verify=not no_verify, progress=lambda done, _total: bar.update(job, completed=done))
    manifest = read_manifest(out)
    per_family = Counter(r.family for r in records)
    held = {r.family for r in records if r.held_out}
    table = Table(title=f"{len(records)} {split} tasks in {escape(str(out))}", title_justify="left")
    table.add_column("family")
    table.add_column("tasks", justify="right")
    table.add_column("held out")
    for family, count in per_family.items():
        table.add_row(escape(family), str(count), "yes" if family in held else "")
    console.print(table)
    dropped = manifest.dropped if manifest else []
    for d in dropped:
        console.print(f"[yellow]dropped {escape(d['id'])}: {escape(d['reason'])}[/yellow]")


@tasks_group.command(name="check")
@click.argument("data", type=click.Path(path_type=Path))
def check_folder(data: Path) -> None:
    """Read a task folder: usable tasks per family, and every record that cannot be used."""
    from t3edge.tasks import load_tasks

    records, problems = load_tasks(data)
    console = _console()
    per_family = Counter(r.family for r in records)
    console.print(f"{len(records)} usable tasks: " + ", ".join(f"{escape(k)} {v}" for k, v in per_family.items()))
    for problem in problems:
        console.print(f"[yellow]{escape(str(problem))}[/yellow]")
    if problems:
        console.print(f"{len(problems)} record(s) cannot be used")


@tasks_group.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Trajectory JSONL to append kept trajectories to (dropped.jsonl goes beside it).")
@click.option("--context-length", type=click.IntRange(min=0), default=8192, show_default=True,
              help="The student's context length (chooses the system prompt; 0: unknown, full prompt).")
@click.option("--vision", is_flag=True, help="The student sees images (default: text-only, like SmolLM2).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="An extra TOML file for the agent settings.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def teach(data: Path, out: Path, context_length: int, vision: bool, config_file: str | None,
          no_progress: bool) -> None:
    """Run each task's reference through the real agent loop; keep the checked trajectories."""
    from t3edge.agent import load_agent_config
    from t3edge.tasks import load_tasks
    from t3edge.tasks.teacher import summary_rows, teach as run_teacher

    records, problems = load_tasks(data)
    console = _console()
    for problem in problems:
        console.print(f"[yellow]left out: {escape(str(problem))}[/yellow]")
    config = load_agent_config(file=config_file)
    with _progress(not no_progress) as bar:
        job = bar.add_task("teach", total=len(records))
        report = run_teacher(records, data, out, agent_config=config, context_length=context_length or None,
                             vision=vision, progress=lambda done, _total: bar.update(job, completed=done))
    reasons = ", ".join(f"{escape(k)} {v}" for k, v in sorted(report.dropped.items())) or "none"
    console.print(f"kept {report.kept}, dropped {report.total_dropped} ({reasons}), "
                  f"already done {report.skipped}")
    table = Table(title="per family (tasks run now)", title_justify="left")
    for column in ("family", "kept", "dropped", "keep rate %"):
        table.add_column(column, justify="left" if column == "family" else "right")
    for row in summary_rows(report):
        rate: Any = row["keep_rate"]
        table.add_row(escape(row["family"]), str(row["kept"]), str(row["dropped"]), "–" if rate is None else f"{rate:.1f}")
    console.print(table)
    console.print(f"trajectories: {escape(str(out))}; dropped: {escape(str(report.dropped_path))}")
