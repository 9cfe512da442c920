"""`t3edge eval`: run GTA / GAIA / the built-in tasks with the agent, score predictions, merge shards,
compare runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table


BENCHMARKS = click.Choice(["gta", "gaia"])
SCORABLE = click.Choice(["gta", "gaia", "tasks"])
SPLITS = click.Choice(["validation", "test"])


def _console() -> Console:
    return Console(highlight=False)


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def _flat(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flat(value, name + ".")
        else:
            rows.append((name, value))
    return rows


def _print_metrics(console: Console, metrics: dict[str, Any], title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in _flat(metrics):
        table.add_row(escape(name), _fmt(value))
    console.print(table)


@click.group(name="eval")
def eval_group() -> None:
    """Evaluate on GTA, GAIA and the built-in tasks; score predictions, merge shards, compare runs
    (docs/eval.md)."""


def _run_options(f: Any) -> Any:
    options = [
        click.option("--data", type=click.Path(path_type=Path), default=None,
                     help="Dataset folder (default: the downloaded copy in the data dir, fetched if missing)."),
        click.option("--model", "-m", default=None, help="Registry name, model folder, .gguf, URL or replay:FILE."),
        click.option("--backend", type=click.Choice(["mlx", "gguf"]), default=None, help="Build of a registry model."),
        click.option("--adapter", default=None, help="LoRA adapter applied to the model."),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N items."),
        click.option("--shard", default=None, help="Run shard i of n (i/n, i from 0); merge shards afterwards."),
        click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Run folder (default: <data dir>/eval/<benchmark>-<model>...; rerun to resume)."),
        click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Agent steps per item (default 8)."),
        click.option("--format", "step_format", type=click.Choice(["free", "constrained"]), default=None,
                     help="Step decoding: by the step grammar or free (default: agent.format, constrained)."),
        click.option("--jobs", "-j", type=click.IntRange(min=1, max=64), default=None,
                     help="Items run at once (default: eval.jobs, else 4 against a server on another machine, 1 otherwise)."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="An extra TOML file for the eval settings."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _run(benchmark: str, data: Path | None, model: str | None, backend: str | None, adapter: str | None,
         limit: int | None, shard: str | None, out: Path | None, max_steps: int | None, step_format: str | None,
         jobs: int | None, config_file: str | None, no_progress: bool, token: str | None = None, extra: dict[str, Any] | None = None) -> None:
    from t3edge.eval.config import load_eval_config
    from t3edge.eval.jobs import prepare_run, run_job
    from t3edge.chat import model_spec, prepare_model
    from t3edge.eval.records import Shard

    console = _console()
    cfg = load_eval_config({"max_steps": max_steps, "jobs": jobs, **(extra or {})}, file=config_file)
    shard_spec = Shard.parse(shard) if shard else None
    model = model_spec(model, backend)  # type: ignore[arg-type]
    run = prepare_run(benchmark, model, cfg, data=data, backend=backend, adapter=adapter,  # type: ignore[arg-type]
                      limit=limit, out=out, token=token,
                      agent_overrides={"format": step_format} if step_format else None)
    prepare_model(model, backend)  # type: ignore[arg-type]  (the data is fine: now the model's BLAS)
    folder = run.folder
    console.print(f"{benchmark.upper()}: {len(run.suite.selected(limit, shard_spec))} items"
                  f"{f' (shard {escape(shard)})' if shard else ''} with {escape(model)}"
                  f"{f', {run.jobs} at a time' if run.jobs > 1 else ''} -> {escape(str(folder))}")
    try:
        outcome, summary = run_job(run, shard=shard_spec, progress=not no_progress, fsync=cfg.fsync)
    except KeyboardInterrupt:
        click.echo("finished items are kept in the run folder; run the same command again to continue", err=True)
        raise
    for item_id, error in outcome.failed:
        console.print(f"[yellow]item {escape(item_id)} failed (rerun to retry): {escape(error)}[/yellow]")
    if summary is None:
        next_step = (f"when all shards are done: t3edge eval merge {escape(str(folder))}" if shard_spec
                     else "run the same command again to retry the rest")
        console.print(f"{outcome.finished} of {outcome.total} items finished; {next_step}")
        return
    metrics = summary["metrics"]
    if benchmark == "tasks":  # per family: in report.md
        metrics = {k: v for k, v in metrics.items() if k != "families"}
    _print_metrics(console, metrics, f"{benchmark.upper()} ({summary['finished']} items)")
    console.print(f"report: {escape(str(folder / 'report.md'))}")


@eval_group.command()
@_run_options
def gta(**kwargs: Any) -> None:
    """Run the agent on GTA (a local release folder, or fetched from the hub when online)."""
    _run("gta", **kwargs)


@eval_group.command()
@_run_options
@click.option("--split", type=SPLITS, default=None, help="validation (default) or test (hidden answers).")
@click.option("--token", default=None, help="Hub token with access to the gated GAIA dataset (or set HF_TOKEN).")
def gaia(split: str | None, token: str | None, **kwargs: Any) -> None:
    """Run the agent on GAIA (your copy of the gated dataset, or downloaded with a token)."""
    _run("gaia", token=token, extra={"gaia_split": split}, **kwargs)


@eval_group.command()
@_run_options
def tasks(**kwargs: Any) -> None:
    """Run the agent on a built-in task folder (made by `t3edge tasks make`; docs/tasks.md)."""
    _run("tasks", **kwargs)


@eval_group.command()
@click.argument("benchmark", type=BENCHMARKS)
@click.option("--dest", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where to put it (default: <data dir>/benchmarks/<benchmark>).")
@click.option("--token", default=None, help="Hub token (GAIA is gated).")
@click.option("--split", type=SPLITS, default="validation", show_default=True, help="GAIA split.")
def fetch(benchmark: str, dest: Path | None, token: str | None, split: str) -> None:
    """Download a benchmark from the Hugging Face Hub (needs the internet)."""
    from t3edge.eval.config import load_eval_config
    from t3edge.eval.gaia import fetch_gaia
    from t3edge.eval.gta import fetch_gta
    from t3edge.eval.jobs import benchmark_folder

    cfg = load_eval_config()
    target = dest or benchmark_folder(benchmark)  # type: ignore[arg-type]
    path = fetch_gta(target, cfg.gta_repo) if benchmark == "gta" else fetch_gaia(target, token, split, cfg.gaia_repo)
    _console().print(f"{benchmark.upper()} is in {escape(str(path))}")


@eval_group.command()
@click.argument("benchmark", type=SCORABLE)
@click.option("--data", type=click.Path(path_type=Path, exists=True), required=True, help="Dataset folder.")
@click.option("--predictions", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="GTA / tasks: JSON object item id -> answer. GAIA: submission JSONL (task_id, model_answer).")
@click.option("--per-item", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write one JSON line per item: id, prediction, verdict.")
@click.option("--split", type=SPLITS, default=None, help="GAIA split (default validation).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def score(benchmark: str, data: Path, predictions: Path, per_item: Path | None, split: str | None,
          as_json: bool) -> None:
    """Score predictions made elsewhere with the same scorers (tool metrics need a run)."""
    from t3edge.eval.config import load_eval_config
    from t3edge.eval.jobs import load_suite, read_predictions, score_predictions

    cfg = load_eval_config({"gaia_split": split})
    preds = read_predictions(benchmark, predictions)  # type: ignore[arg-type]
    suite, similarity = load_suite(benchmark, data, cfg)  # type: ignore[arg-type]
    result = score_predictions(suite, preds, per_item)
    result["similarity"] = similarity
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = _console()
    _print_metrics(console, result["metrics"], f"{benchmark.upper()}: {result['items']} items scored")
    if result["missing"]:
        console.print(f"[yellow]{result['missing']} items had no prediction (scored as unanswered)[/yellow]")
    console.print(f"similarity model: {escape(similarity)}")


@eval_group.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Merged run folder (default: the first folder).")
def merge(folders: tuple[Path, ...], out: Path | None) -> None:
    """Join the shards of a run (in one or several folders) into one result and report."""
    from t3edge.eval.jobs import merge as merge_runs

    target = out or folders[0]
    summary = merge_runs(list(folders), target)
    console = _console()
    _print_metrics(console, summary["metrics"], f"merged: {summary['finished']} items")
    console.print(f"report: {escape(str(target / 'report.md'))}")


@eval_group.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
def report(folder: Path) -> None:
    """Rewrite a run's report from its results (also for an unfinished run)."""
    from t3edge.eval.jobs import report as write

    summary = write(folder)
    _print_metrics(_console(), summary["metrics"], f"{summary['finished']} of {summary['total']} items")


@eval_group.command()
@click.argument("run_a", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("run_b", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(run_a: Path, run_b: Path, as_json: bool) -> None:
    """Show two runs side by side and list the items whose result changed."""
    from t3edge.eval.jobs import compare as compare_runs

    result = compare_runs(run_a, run_b)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = _console()
    a, b = result["a"], result["b"]
    table = Table(title=f"{result['benchmark'].upper()}: A vs B", title_justify="left")
    table.add_column("metric")
    table.add_column(escape(f"A: {a['model']}" + (f" + {a['adapter']}" if a["adapter"] else "")), justify="right")
    table.add_column(escape(f"B: {b['model']}" + (f" + {b['adapter']}" if b["adapter"] else "")), justify="right")
    rows_b = dict(_flat(b["metrics"]))
    for name, value in _flat(a["metrics"]):
        table.add_row(escape(name), _fmt(value), _fmt(rows_b.get(name)))
    console.print(table)
    if not result["changed"]:
        console.print("no item changed its result")
    for change in result["changed"]:
        console.print(f"item {escape(change['id'])}: {_fmt(change['a'])} -> {_fmt(change['b'])}  "
                      f"({escape(repr(change['prediction_a']))} -> {escape(repr(change['prediction_b']))})")
    for side in ("only_in_a", "only_in_b"):
        if result[side]:
            console.print(f"{side.replace('_', ' ')}: {escape(', '.join(result[side]))}")


