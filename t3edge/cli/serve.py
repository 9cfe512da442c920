"""`t3edge serve`: the local agent as an OpenAI-compatible endpoint (docs/serve.md)."""

from __future__ import annotations

import socket
from pathlib import Path

import click
import uvicorn

from t3edge.errors import BadInput
from t3edge.hosts import is_loopback
from t3edge.serve.app import Server, ServeSettings


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                           hint="choose another port with --port, or stop what uses it") from exc


@click.command()
@click.option("--model", default=None, help="Registry name, folder, .gguf file or URL (default: configured).")
@click.option("--backend", type=click.Choice(["mlx", "gguf"]), default=None,
              help="Force MLX or llama.cpp for a registry model.")
@click.option("--adapter", default=None, help="LoRA adapter to apply.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--api-key", envvar="T3EDGE_API_KEY", default=None,
              help="Require this key (Authorization: Bearer KEY); required off loopback. Env: T3EDGE_API_KEY.")
@click.option("--allow-path", "allowed", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="A folder whose files requests may name by path (repeatable); else images come as data URLs.")
@click.option("--max-steps", type=int, default=None, help="Step limit of a run (default from config: 8).")
@click.option("--format", "step_format", type=click.Choice(["free", "constrained"]), default=None,
              help="Decode steps by the step grammar, or freely (default from config: constrained).")
@click.option("--max-run-s", type=float, default=600.0, show_default=True, help="Time limit of one request.")
@click.option("--max-body-mb", type=int, default=32, show_default=True, help="Largest request body.")
@click.option("--max-queue", type=int, default=64, show_default=True, help="Requests that may wait for the model.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="An extra agent TOML config file.")
def serve(model: str | None, backend: str | None, adapter: str | None, host: str, port: int,
          api_key: str | None, allowed: tuple[str, ...], max_steps: int | None, step_format: str | None,
          max_run_s: float, max_body_mb: int, max_queue: int, config_file: str | None) -> None:
    """Serve the agent over HTTP: POST /v1/chat/completions runs a task, any OpenAI client works."""
    from t3edge.agent import load_agent_config
    from t3edge.chat import prepare_model
    from t3edge.chats import default_store
    from t3edge.config import data_dir
    from t3edge.loading import load_backend
    from t3edge.models import load_models_config

    if not is_loopback(host) and not api_key:
        raise BadInput(f"listening on {host} lets anyone who reaches it run code through the agent",
                       hint="give --api-key (or set T3EDGE_API_KEY), or listen on 127.0.0.1")
    config = load_agent_config({"max_steps": max_steps, "format": step_format}, file=config_file)
    _check_port_free(host, port)
    spec = prepare_model(model, backend)  # type: ignore[arg-type]
    click.echo(f"loading {spec}...", err=True)
    loaded = load_backend(spec, backend=backend, adapter=adapter)  # type: ignore[arg-type]
    generation = load_models_config().generation.model_copy(update=loaded.generation_overrides)
    settings = ServeSettings(
        model_name=spec, agent=config, generation=generation, api_key=api_key,
        uploads=data_dir() / "serve" / "uploads", allowed_paths=[Path(a) for a in allowed],
        max_body_bytes=max_body_mb * 2**20, max_run_s=max_run_s, max_queue=max_queue)
    store = default_store()
    app = Server(loaded, store, settings).app()
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving {spec} at http://{shown}:{port}/v1 (agent: model {spec!r}; plain generation: "
               f"{spec + ':raw'!r}); chats are kept in {store.path}. Ctrl-C stops.", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    finally:
        store.close()
        loaded.close()
