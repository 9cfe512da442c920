"""`t3edge generate`: one streamed VLM answer about images."""

from __future__ import annotations

import sys

import click

from t3edge.backends.base import GenerationConfig, ImagePart, Message, Part, TextPart
from t3edge.images import load_image


@click.command()
@click.argument("prompt")
@click.option("--model", "-m", default=None, help="Registry name, model folder, .gguf file or URL.")
@click.option("--image", "-i", "images", multiple=True, type=click.Path(), help="An image (repeatable).")
@click.option("--backend", type=click.Choice(["mlx", "gguf"]), default=None,
              help="Build to use for a registry name (default: MLX on Apple silicon, else GGUF).")
@click.option("--adapter", type=click.Path(), default=None, help="A LoRA adapter.")
@click.option("--system", default=None, help="A system prompt.")
@click.option("--max-tokens", type=int, default=None)
@click.option("--temperature", type=float, default=None)
@click.option("--top-p", type=float, default=None)
@click.option("--seed", type=int, default=None)
def generate(prompt: str, model: str | None, images: tuple[str, ...], backend: str | None,
             adapter: str | None, system: str | None, max_tokens: int | None,
             temperature: float | None, top_p: float | None, seed: int | None) -> None:
    """Answer PROMPT about the given images, streaming tokens, then print token counts."""
    from t3edge.chat import prepare_model
    from t3edge.loading import load_backend
    from t3edge.models import load_models_config

    for path in images:  # fail on a bad image before loading any model
        load_image(path)
    cfg = load_models_config({
        "generation.max_tokens": max_tokens, "generation.temperature": temperature,
        "generation.top_p": top_p, "generation.seed": seed,
    })
    spec = prepare_model(model, backend)  # type: ignore[arg-type]
    engine = load_backend(spec, backend=backend, adapter=adapter, config=cfg)  # type: ignore[arg-type]

    parts: list[Part] = [ImagePart(p) for p in images]
    parts.append(TextPart(prompt))
    messages = ([Message("system", system)] if system else []) + [Message("user", parts)]
    completion = None
    explicit = {k: v for k, v in {"temperature": temperature, "top_p": top_p}.items() if v is not None}
    config = cfg.generation.model_copy(update={**engine.generation_overrides, **explicit})
    for item in engine.stream(messages, GenerationConfig.model_validate(config.model_dump())):
        if hasattr(item, "usage"):
            completion = item
        else:
            sys.stdout.write(item.text)
            sys.stdout.flush()
    sys.stdout.write("\n")
    assert completion is not None
    u = completion.usage
    click.secho(
        f"[{engine.name}] prompt {u.prompt_tokens} tokens (cached {u.cached_tokens}), "
        f"generated {u.generated_tokens} tokens, {u.tokens_per_second:.1f} tokens/s, "
        f"prefill {u.prompt_seconds:.2f} s, finish: {completion.finish_reason}",
        fg="cyan", err=True,
    )
