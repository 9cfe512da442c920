"""Text-only MLX models on mlx-lm: a Hugging Face or MLX folder whose config.json has no vision part
(for example what `t3edge convert from-gguf` writes), behind the same interface as the mlx-vlm
backend: stop strings, token counts, LoRA adapter folders (`mlx_lm.load(adapter_path=...)`).

KV prefix reuse: the backend keeps mlx-lm's prompt cache together with the token ids it holds (the
previous prompt, the tokens generated after it, and the end-of-generation token where one was
sampled). A call reuses the longest common prefix of its prompt and those ids: the cache is
trimmed back to it and only the rest is prefilled. mlx-lm can trim a full KV cache, and a
sliding-window one (Gemma's local layers) until its window has filled; past that, the cache is
reused only when the new prompt extends everything it holds, else a fresh cache is started.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from t3edge.backends.base import GenerationConfig, Message, StreamItem, Usage
from t3edge.backends.mlx import MLXCommon, Step, load_folder
from t3edge.errors import BackendError
from t3edge.backends.settings import BackendSettings, ModelFiles

REPEAT_WINDOW = 64  # tokens the repetition penalty looks back on, as in the llama.cpp backend


def is_text_only(folder: str | Path) -> bool:
    """Whether a model folder is text-only: its config.json has no vision configuration."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "vision_config" not in config


class MLXTextBackend(MLXCommon):
    name = "mlx"

    def __init__(self, resolved: ModelFiles, settings: BackendSettings, *,
                 adapter: str | None = None) -> None:
        from mlx_lm import load

        from t3edge.chat_templates import fallback_template

        path = Path(resolved.path or resolved.spec)
        self.model, self.tokenizer, config = load_folder(load, path, adapter)
        super().__init__(resolved.spec, supports_images=False,
                         context_length=settings.context_length or config.get("max_position_embeddings"))
        self.adapter = adapter
        self.template_owner = self.tokenizer
        if not getattr(self.tokenizer, "chat_template", None):  # a base model: its family's template
            self.chat_template = fallback_template(str(config.get("model_type", "")))
        self._cache: list[Any] | None = None
        self._held: list[int] = []  # the token ids the KV cache holds, in order

    def forget(self) -> None:
        self._cache, self._held = None, []

    def tokenize(self, messages: Sequence[Message]) -> list[int]:
        """The prompt ids of `messages` (the chat template adds any BOS token itself)."""
        return list(self.tokenizer.encode(self.render(messages), add_special_tokens=False))

    def _reusable(self, ids: list[int]) -> tuple[list[Any], int]:
        """A KV cache holding the longest usable prefix of `ids`, and that prefix's length."""
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

        common = 0
        for a, b in zip(self._held, ids):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)  # the last prompt token is always fed, for its logits
        cache = self._cache
        if cache is None or common == 0:
            return make_prompt_cache(self.model), 0
        excess = len(self._held) - common
        if excess and not (can_trim_prompt_cache(cache) and trim_prompt_cache(cache, excess) == excess):
            return make_prompt_cache(self.model), 0
        return cache, common

    def generate_stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        if self.prepared_images(messages):
            raise BackendError(f"{self.model_id} is a text-only model and cannot take images")
        ids = self.tokenize(messages)
        self.check_fits(len(ids))
        cache, cached = self._reusable(ids)
        self._cache, self._held = cache, ids[:cached]
        if config.seed is not None:
            mx.random.seed(config.seed)
        processors = (make_logits_processors(repetition_penalty=config.repetition_penalty,
                                             repetition_context_size=REPEAT_WINDOW)
                      if config.repetition_penalty != 1.0 else [])
        processors += self.grammar_processors(config)
        responses = stream_generate(
            self.model, self.tokenizer, mx.array(ids[cached:]), max_tokens=config.max_tokens,
            sampler=make_sampler(config.temperature, top_p=config.top_p), logits_processors=processors or None,
            prompt_cache=cache,
        )
        fed: list[int] = []  # every token the model was given after the prompt

        def on_end(_generated: list[int], usable: bool) -> None:
            if usable:
                self._track(cache, ids + fed)
            else:
                self.forget()

        usage = Usage(prompt_tokens=len(ids), cached_tokens=cached)
        yield from self.run_steps(_lm_steps(responses, fed), config, usage, on_end)

    def _track(self, cache: list[Any], known: list[int]) -> None:
        """Record what `cache` holds after a call; forget it if that cannot be told."""
        from mlx_lm.models.cache import trim_prompt_cache

        offset = max((int(getattr(c, "offset", 0)) for c in cache), default=0)
        if offset > len(known) and trim_prompt_cache(cache, offset - len(known)) != offset - len(known):
            self.forget()
            return
        self._cache, self._held = cache, known[:offset]


def _lm_steps(responses: Generator[Any, None, None], fed: list[int]) -> Generator[Step, None, None]:
    """mlx-lm's responses as Steps. Its last response carries a new token too: the last generated
    one, or the end-of-generation token (not part of the output, but in the KV cache)."""
    try:
        for r in responses:
            fed.append(int(r.token))
            if r.finish_reason is None:
                yield Step(r.text, token=int(r.token))
            elif r.finish_reason == "stop":
                yield Step(r.text, finish="stop")
            else:
                yield Step(r.text, token=int(r.token), finish="length")
    finally:
        responses.close()
