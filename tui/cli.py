"""`t3edge chat`: the terminal app."""

from __future__ import annotations

import click

from t3edge.errors import T3Error


@click.command()
@click.option("--model", "-m", default=None,
              help="Registry name, model folder, .gguf file, URL or replay:FILE (default: the last one used).")
@click.option("--backend", "backend_kind", type=click.Choice(["mlx", "gguf"]), default=None,
              help="Force MLX or llama.cpp for a registry model.")
@click.option("--adapter", "-a", default=None, help="A LoRA adapter for the model.")
@click.option("--session", "session_id", default=None, help="Reopen a saved chat (ids in the sessions screen).")
@click.option("--approve", type=click.Choice(["never", "ask"]), default=None,
              help="ask: show each code block and run, edit or reject it before it runs (default from config: never).")
@click.option("--format", "step_format", type=click.Choice(["free", "constrained"]), default=None,
              help="Decode each step by the step grammar, or freely (default from config: constrained).")
def chat(model: str | None, backend_kind: str | None, adapter: str | None, session_id: str | None,
         approve: str | None, step_format: str | None) -> None:
    """Chat with the local agent about your files; every step shows live and is saved."""
    import threading

    from tui.settings import load_tui_config
    from tui.widgets.preview import prepare

    config = load_tui_config()
    # textual-image asks the terminal what it can draw; that must happen before the app takes the
    # terminal over, and it runs while the rest of the app is imported
    probe = threading.Thread(target=prepare, name="graphics-probe", daemon=True)
    if config.image_previews:
        probe.start()

    from tui.app import T3App
    from tui.sessions import open_store

    store = open_store()
    if probe.is_alive():
        probe.join()
    if session_id is not None:
        try:
            store.get(session_id)
        except T3Error:
            store.close()
            raise
    T3App(model=model, backend_kind=backend_kind, adapter=adapter,  # type: ignore[arg-type]
          session_id=session_id, store=store, config=config,
          agent_overrides={k: v for k, v in (("approve", approve), ("format", step_format)) if v}).run()
