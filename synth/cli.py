"""`t3edge synth ...`: one command per stage, `run` for all of them, `index-images`, `stats`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from synth.config import SynthConfig
from synth.engine import StageReport
from synth.items import STAGES
from synth.pipeline import export_dir, run_dir, run_pipeline, run_stages
from t3edge.config import load_config

console = Console()


def _options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                     help="A synth TOML file (layered over the shipped defaults)."),
        click.option("--run", "run", type=click.Path(file_okay=False), help="Run folder."),
        click.option("--base-url", help="OpenAI-compatible base URL (synth.api.base_url)."),
        click.option("--model", help="Model name sent to the API (synth.api.model)."),
        click.option("--concurrency", type=int, help="Requests in flight (synth.api.concurrency)."),
        click.option("--budget", type=float, help="Stop once this many USD are spent."),
    ]):
        f = option(f)
    return f


def load_synth_config(config_file: str | None, base_url: str | None = None, model: str | None = None,
                      concurrency: int | None = None, budget: float | None = None) -> SynthConfig:
    overrides = {"api.base_url": base_url, "api.model": model, "api.concurrency": concurrency,
                 "budget_usd": budget}
    return load_config("synth", SynthConfig, file=config_file, overrides=overrides)


def _progress_bar() -> tuple[Progress, Callable[[str, int, int], None]]:
    bar = Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, transient=False)
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)  # a total shrinks as items drop out

    return bar, update


def _print_reports(reports: list[StageReport]) -> None:
    table = Table(title="stages")
    for col in ("stage", "passed", "dropped", "done before", "left for later", "seconds", "drop reasons"):
        table.add_column(col)
    for r in reports:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.reasons.items()))
        table.add_row(r.stage, str(r.passed), str(r.dropped), str(r.already_done), str(r.pending),
                      f"{r.seconds:.1f}", reasons)
    console.print(table)
    if any(r.stopped for r in reports):
        console.print("[yellow]The budget is reached: the run stopped cleanly. Raise synth.budget_usd "
                      "(or --budget) and run the same command again to continue.[/yellow]")


@click.group()
def synth() -> None:
    """The data engine: synthesize, verify and export MM-Traj tool-use data from any
    OpenAI-compatible API (a cloud model, llama_cpp.server or mlx_vlm.server)."""


@synth.command()
@_options
@click.option("--export", "export_to", type=click.Path(file_okay=False),
              help="Where the MM-Traj records go (default: RUN/export).")
def run(config_file: str | None, run: str | None, base_url: str | None, model: str | None,
        concurrency: int | None, budget: float | None, export_to: str | None) -> None:
    """Run every stage in order, then export. Re-running resumes where it stopped."""
    cfg = load_synth_config(config_file, base_url, model, concurrency, budget)
    folder = run_dir(cfg, run)
    console.print(f"run folder: {folder}")
    bar, update = _progress_bar()
    with bar:
        reports, exported = run_pipeline(cfg, folder, export_to=Path(export_to) if export_to else None,
                                         progress=update)
    _print_reports(reports)
    if exported is not None:
        console.print(f"exported {exported.train} train + {exported.valid} valid records to {exported.out}")


def _stage_command(stage: str) -> click.Command:
    @_options
    def command(config_file: str | None, run: str | None, base_url: str | None, model: str | None,
                concurrency: int | None, budget: float | None) -> None:
        cfg = load_synth_config(config_file, base_url, model, concurrency, budget)
        bar, update = _progress_bar()
        with bar:
            reports = asyncio.run(run_stages(cfg, run_dir(cfg, run), [stage], progress=update))
        _print_reports(reports)

    command.__doc__ = f"Run the `{stage}` stage on the run folder (resumable)."
    return click.command(name=stage.replace("_", "-"))(command)


for _stage in STAGES:
    synth.add_command(_stage_command(_stage))


@synth.command(name="export")
@_options
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: RUN/export).")
def export_command(config_file: str | None, run: str | None, base_url: str | None, model: str | None,
                   concurrency: int | None, budget: float | None, out: str | None) -> None:
    """Write the kept tasks as MM-Traj records (train.jsonl, valid.jsonl) with their files."""
    from synth.export import export
    from synth.store import RunStore

    cfg = load_synth_config(config_file, base_url, model, concurrency, budget)
    folder = run_dir(cfg, run)
    report = export(RunStore(folder), export_dir(folder, out), cfg.export.valid_fraction)
    console.print(f"exported {report.train} train + {report.valid} valid records to {report.out}")


@synth.command(name="index-images")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--captions", type=click.Path(exists=True, dir_okay=False),
              help="Captions file: JSONL or CSV/TSV with `image` and `caption`. Without it, the model captions.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--base-url", help="OpenAI-compatible base URL of the captioning model.")
@click.option("--model", help="Model name sent to the API.")
def index_images(folder: str, captions: str | None, config_file: str | None, base_url: str | None,
                 model: str | None) -> None:
    """Index an image pool: one caption per image, in FOLDER/t3edge-images.jsonl (resumable)."""
    from synth.engine import RunContext
    from synth.image_pool import INDEX_NAME, STAGE, index_pool

    root = Path(folder)
    cfg = load_synth_config(config_file, base_url, model)
    bar, update = _progress_bar()

    async def go() -> tuple[int, int]:
        if captions is not None:
            return await index_pool(root, captions=Path(captions), caption_with=None,
                                    progress=lambda d, t: update("captions", d, t))
        async with RunContext(cfg, root / ".t3edge-captioning") as ctx:
            async def caption(messages: list) -> str:
                reply = await ctx.client.complete(STAGE, messages, temperature=0.0, max_tokens=200)
                return reply.text

            return await index_pool(root, captions=None, caption_with=caption,
                                    progress=lambda d, t: update("captioning", d, t))

    with bar:
        added, failed = asyncio.run(go())
    console.print(f"indexed {added} new images in {root / INDEX_NAME}"
                  + (f"; {failed} failed (run again to retry them)" if failed else ""))


@synth.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--png", type=click.Path(dir_okay=False), help="Where the plot goes (default: RUN/stats.png).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(run: str, png: str | None, as_json: bool) -> None:
    """Counts per stage, drop reasons, file types, tool use, steps, tokens and cost of RUN."""
    from synth.stats import collect, plot, render

    result = collect(Path(run))
    if as_json:
        click.echo(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        for table in render(result):
            console.print(table)
    path = plot(result, Path(png) if png else Path(run) / "stats.png")
    if not as_json:
        console.print(f"plot: {path}")
