"""`t3edge dev`: tools for developing and testing t3edge."""

from __future__ import annotations

from pathlib import Path

import click

from t3edge.errors import T3Error

ARCHS = ("qwen2_vl", "qwen2_5_vl")  # tinymodels.ARCHS (the wing loads only when the command runs)


@click.group()
def dev() -> None:
    """Developer tools."""


@dev.command("tiny-model")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--arch", type=click.Choice(list(ARCHS)), default="qwen2_vl", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def tiny_model(out: str, arch: str, seed: int) -> None:
    """Write a random-weight model of a real architecture to OUT (offline, ~1 s)."""
    from tinymodels import build_tiny_model

    if Path(out).is_dir() and any(Path(out).iterdir()):
        raise T3Error(f"{out} exists and is not empty", hint="give a new folder, or remove that one")
    path = build_tiny_model(out, arch, seed=seed)  # type: ignore[arg-type]
    click.echo(f"tiny {arch} model written to {path}")


@dev.command("blas")
def blas_status() -> None:
    """Say which BLAS MLX uses here (after the fast-BLAS relaunch that training does)."""
    from t3edge.blas import relaunch_with_fast_blas, status

    note = relaunch_with_fast_blas()
    click.echo(status())
    if note:
        click.echo(note, err=True)
