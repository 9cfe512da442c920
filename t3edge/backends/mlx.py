"""The MLX backend on mlx-vlm: Metal on Apple silicon, the CPU build on Linux, CUDA via mlx[cuda].

Keeps the KV cache between calls: when a call's token sequence extends (or shares a prefix with)
the previous call's prompt plus its output, only the new tokens are prefilled and the images are
not re-encoded; the reused count is reported as `Usage.cached_tokens`.

Text-only folders run on mlx-lm instead (`t3edge.backends.mlx_text`); what both MLX backends share
is here: checked loading, the chat template, and the stream loop (`MLXCommon`, `Step`).
"""

from __future__ import annotations

import abc
import json
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t3edge.backends.base import (
    Backend, Completion, GenerationConfig, Message, StopScanner, StreamItem, TextDelta, TextPart,
    Usage,
)
from t3edge.backends.constrain import Vocabulary, hf_vocabulary
from t3edge.errors import BackendError, ContextFull
from t3edge.images import ImagePolicy
from t3edge.backends.settings import BackendSettings, ModelFiles


def hf_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in the Hugging Face chat-template form (image parts as `{"type": "image"}`)."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        if isinstance(msg.content, str) or not msg.images:
            out.append({"role": msg.role, "content": msg.text})
            continue
        parts = [{"type": "text", "text": p.text} if isinstance(p, TextPart) else {"type": "image"}
                 for p in msg.parts]
        out.append({"role": msg.role, "content": parts})
    return out


def load_folder(load: Callable[..., tuple[Any, Any]], path: Path,
                adapter: str | None) -> tuple[Any, Any, dict[str, Any]]:
    """`load(path, adapter_path=adapter)` (mlx-vlm's or mlx-lm's) after checking the files, and
    the folder's config.json; every failure is a one-line BackendError."""
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise BackendError(
            f"no MLX adapter at {adapter}",
            hint="give the folder holding adapters.safetensors and adapter_config.json",
        )
    if not any(path.glob("*.safetensors")):
        raise BackendError(f"model folder {path} has no .safetensors weights",
                           hint="download or convert the model again (PyTorch .bin files are not read)")
    try:
        model, processor = load(str(path), adapter_path=adapter)
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        checked = f"{path}" + (f"` and `t3edge convert inspect {adapter}" if adapter else "")
        raise BackendError(
            f"cannot load the MLX model in {path}{f' with the adapter {adapter}' if adapter else ''}: "
            f"{type(exc).__name__}: {first_line}",
            hint=f"the files may be corrupt or incomplete: check them with `t3edge convert inspect {checked}`",
        ) from exc
    return model, processor, json.loads((path / "config.json").read_text())


@dataclass
class Step:
    """One item of an MLX generation, as both MLX backends hand it to `MLXCommon.run_steps`."""

    text: str = ""
    token: int | None = None  # a newly generated token
    token_ids: list[int] | None = None  # the whole output (mlx-vlm's closing result)
    finish: str | None = None  # "stop" or "length", on the closing step
    cached: int | None = None  # prompt tokens reused from the KV cache


class MLXCommon(Backend):
    """What the MLX backends share: the model's chat template, token counts and the stream loop."""

    tokenizer: Any
    template_owner: Any
    chat_template: str | None = None  # replaces the model's own (which a base model may lack)
    _vocabulary: Vocabulary | None = None  # for constrained decoding, built on first use

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._calls = threading.RLock()  # one call at a time: the model has one prompt cache

    def stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        """One call at a time (runs sharing the model wait here; see `Backend.stream`)."""
        with self._calls:
            yield from self.generate_stream(messages, config)

    @abc.abstractmethod
    def generate_stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        """The model's own stream, called with the model to itself."""

    def reset(self) -> None:
        with self._calls:
            self.forget()

    @abc.abstractmethod
    def forget(self) -> None:
        """Drop the cached prompt state (the model is to itself)."""

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text of `messages` through the model's chat template."""
        extra = {"chat_template": self.chat_template} if self.chat_template else {}
        return self.template_owner.apply_chat_template(
            hf_messages(messages), tokenize=False, add_generation_prompt=True, **extra
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def can_constrain(self) -> bool:
        return True

    def grammar_processors(self, config: GenerationConfig) -> list[Callable[[Any, Any], Any]]:
        """The logits processor enforcing `config.grammar` (none for free generation)."""
        if not config.grammar:
            return []
        if self._vocabulary is None:
            self._vocabulary = hf_vocabulary(self.tokenizer, self.vocab_size())
        return [self._vocabulary.constraint(config.grammar).mlx_processor()]

    def vocab_size(self) -> int:
        """The width of the model's logits (the embedding table may be padded past the tokenizer)."""
        for holder in (self.model, getattr(self.model, "language_model", None)):
            args = getattr(holder, "args", None) or getattr(holder, "config", None)
            size = getattr(args, "vocab_size", None) if args is not None else None
            if size:
                return int(size)
        return len(self.tokenizer.get_vocab())

    def check_fits(self, n_prompt: int) -> None:
        if self.context_length and n_prompt + 1 > self.context_length:
            raise ContextFull(
                f"the prompt has {n_prompt} tokens but the context holds {self.context_length}",
                hint="shorten the conversation or raise backend.context_length",
            )

    @staticmethod
    def run_steps(steps: Generator[Step, None, None], config: GenerationConfig, usage: Usage,
                  on_end: Callable[[list[int], bool], None]) -> Iterator[StreamItem]:
        """Text deltas of `steps` with stop strings cut, then the Completion.

        `on_end(generated, usable)` runs however the stream ends (also when the consumer closes it):
        `usable` is False when it failed before producing anything, so the KV cache is unknown.
        """
        scanner = StopScanner(config.stop)
        generated: list[int] = []
        finish = "length"
        start = time.perf_counter()
        first_token_at: float | None = None
        done = False
        try:
            for step in steps:
                if step.cached is not None:
                    usage.cached_tokens = step.cached
                if step.token_ids is not None:
                    generated = list(step.token_ids)
                if step.token is not None:
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                    generated.append(step.token)
                if step.finish is not None:
                    finish = step.finish
                shown = scanner.feed(step.text) if step.text else ""
                if shown:
                    yield TextDelta(shown)
                if scanner.hit:
                    finish = "stop_string"
                    break
            if scanner.hit is None:
                tail = scanner.flush()
                if tail:
                    yield TextDelta(tail)
            done = True
        finally:
            steps.close()
            on_end(generated, done or finish == "stop_string" or bool(generated))
        end = time.perf_counter()
        usage.prompt_seconds = (first_token_at or end) - start
        usage.generation_seconds = end - (first_token_at or end)
        usage.generated_tokens = len(generated)
        yield Completion(text=scanner.text, usage=usage, finish_reason=finish,  # type: ignore[arg-type]
                         stop_string=scanner.hit, token_ids=generated, grammar=config.grammar)


class MLXBackend(MLXCommon):
    name = "mlx"

    def __init__(self, resolved: ModelFiles, settings: BackendSettings, *,
                 adapter: str | None = None) -> None:
        from mlx_vlm import load
        from mlx_vlm.generate import PromptCacheState

        path = Path(resolved.path or resolved.spec)
        self.model, self.processor, config = load_folder(load, path, adapter)
        text_cfg = config.get("text_config", config)
        super().__init__(
            resolved.spec,
            context_length=settings.context_length or text_cfg.get("max_position_embeddings"),
            supports_images=hasattr(self.model, "vision_tower"),
            image_policy=ImagePolicy.for_model(path, max_pixels=settings.max_image_pixels),
        )
        self.adapter = adapter
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.template_owner = self.processor if hasattr(self.processor, "apply_chat_template") else self.tokenizer
        self._state_cls = PromptCacheState
        self._state = PromptCacheState()

    def forget(self) -> None:
        self._state = self._state_cls()

    def generate_stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        import mlx.core as mx
        from mlx_vlm import stream_generate
        from mlx_vlm.models import cache as mlx_cache
        from mlx_vlm.utils import prepare_inputs

        images = self.prepared_images(messages)
        if images and not self.supports_images:
            raise BackendError(f"{self.model_id} is a text-only model and cannot take images")
        prompt = self.render(messages)
        inputs = prepare_inputs(
            self.processor, images=images or None, prompts=prompt,
            image_token_index=getattr(self.model.config, "image_token_index", None),
            add_special_tokens=False,
        )
        input_ids = inputs["input_ids"]
        n_prompt = int(input_ids.shape[1])
        self.check_fits(n_prompt)
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "attention_mask")}
        if config.seed is not None:
            mx.random.seed(config.seed)
        lm = self.model.language_model
        for attr in ("_position_ids", "_rope_deltas"):  # Qwen M-RoPE state left by a previous call
            if hasattr(lm, attr):
                setattr(lm, attr, None)
        own_cache = mlx_cache.make_prompt_cache(self.model.language_model)
        state = self._state
        prefix_cache = state.cache
        results = stream_generate(
            self.model, self.processor, prompt,
            input_ids=input_ids, pixel_values=inputs.get("pixel_values"),
            mask=inputs.get("attention_mask"),
            max_tokens=config.max_tokens, temperature=config.temperature, top_p=config.top_p,
            seed=config.seed, prompt_cache=own_cache, prompt_cache_state=state,
            logits_processors=self.grammar_processors(config) or None, **extra,
        )
        usage = Usage(prompt_tokens=n_prompt)

        def on_end(generated: list[int], usable: bool) -> None:
            if usable:
                tracked = prefix_cache if usage.cached_tokens and prefix_cache is not None else own_cache
                state.update(input_ids[0].tolist() + generated, tracked)
            else:
                self.forget()

        yield from self.run_steps(_vlm_steps(results), config, usage, on_end)


def _vlm_steps(results: Generator[Any, None, None]) -> Generator[Step, None, None]:
    """mlx-vlm's results as Steps: its closing result carries every generated id."""
    try:
        for result in results:
            cached = int(result.cached_tokens or 0)
            if result.token_ids is not None:
                yield Step(result.text or "", token_ids=list(result.token_ids), cached=cached,
                           finish="stop" if result.finish_reason == "stop" else "length")
            elif result.token is not None:
                yield Step(result.text, token=int(result.token), cached=cached)
            else:
                yield Step(cached=cached)
    finally:
        results.close()
