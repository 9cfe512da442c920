"""`t3edge config`: the effective settings and where each value comes from."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from t3edge.config import SHIPPED_DIR, effective, sections, user_config_dir


@click.group()
def config() -> None:
    """Show settings. Layers: shipped defaults, your user folder, --config FILE, flags."""


@config.command("show")
@click.argument("section", required=False, type=click.Choice(list(sections())))
@click.option("--config", "file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An extra TOML file layered over the defaults (as commands accept).")
def show(section: str | None, file: str | None) -> None:
    """Print every effective value of SECTION (default: all) with its source."""
    console = Console()
    for name in [section] if section else list(sections()):
        table = Table(title=escape(f"[{name}]"), title_justify="left")
        table.add_column("key")
        table.add_column("value", overflow="fold")
        table.add_column("from", style="dim", overflow="fold")
        for key, value, source in effective(name, file=file):
            table.add_row(key, escape(json.dumps(value)), escape(source))
        console.print(table)


@config.command("path")
def path() -> None:
    """Print the shipped defaults folder and your override folder."""
    click.echo(f"defaults: {SHIPPED_DIR}")
    click.echo(f"user:     {user_config_dir()}  (put <section>.toml files here)")
