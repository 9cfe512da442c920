"""The MLX backend on mlx-vlm: Metal on Apple silicon, the CPU build on Linux, CUDA via mlx[cuda].

Keeps the KV cache between calls: when a call's token sequence extends (or shares a prefix with)
the previous call's prompt plus its output, only the new tokens are prefilled and the images are
not re-encoded; the reused count is reported as `Usage.cached_tokens`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from t3edge.backends.base import (
    Backend, Completion, GenerationConfig, Message, StopScanner, StreamItem, TextDelta, TextPart,
    Usage,
)
from t3edge.errors import BackendError, ContextFull
from t3edge.images import ImagePolicy
from t3edge.models import BackendSettings, ResolvedModel


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


class MLXBackend(Backend):
    name = "mlx"

    def __init__(self, resolved: ResolvedModel, settings: BackendSettings, *,
                 adapter: str | None = None) -> None:
        from mlx_vlm import load
        from mlx_vlm.generate import PromptCacheState

        path = Path(resolved.path or resolved.spec)
        if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
            raise BackendError(
                f"no MLX adapter at {adapter}",
                hint="give the folder holding adapters.safetensors and adapter_config.json",
            )
        if not any(path.glob("*.safetensors")):
            raise BackendError(f"model folder {path} has no .safetensors weights",
                               hint="download or convert the model again (PyTorch .bin files are not read)")
        try:
            self.model, self.processor = load(str(path), adapter_path=adapter)
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            checked = f"{path}" + (f"` and `t3edge convert inspect {adapter}" if adapter else "")
            raise BackendError(
                f"cannot load the MLX model in {path}{f' with the adapter {adapter}' if adapter else ''}: "
                f"{type(exc).__name__}: {first_line}",
                hint=f"the files may be corrupt or incomplete: check them with `t3edge convert inspect {checked}`",
            ) from exc
        config = json.loads((path / "config.json").read_text())
        text_cfg = config.get("text_config", config)
        super().__init__(
            resolved.spec,
            context_length=settings.context_length or text_cfg.get("max_position_embeddings"),
            supports_images=hasattr(self.model, "vision_tower"),
            image_policy=ImagePolicy.for_model(path, max_pixels=settings.max_image_pixels),
        )
        self.adapter = adapter
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self._state_cls = PromptCacheState
        self._state = PromptCacheState()

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text of `messages` through the model's own chat template."""
        template_owner = self.processor if hasattr(self.processor, "apply_chat_template") else self.tokenizer
        return template_owner.apply_chat_template(
            hf_messages(messages), tokenize=False, add_generation_prompt=True
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def reset(self) -> None:
        self._state = self._state_cls()

    def stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
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
        if self.context_length and n_prompt + 1 > self.context_length:
            raise ContextFull(
                f"the prompt has {n_prompt} tokens but the context holds {self.context_length}",
                hint="shorten the conversation or raise backend.context_length",
            )
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
            seed=config.seed, prompt_cache=own_cache, prompt_cache_state=state, **extra,
        )
        scanner = StopScanner(config.stop)
        usage = Usage(prompt_tokens=n_prompt)
        generated: list[int] = []
        finish = "length"
        start = time.perf_counter()
        first_token_at: float | None = None
        done = False
        try:
            for result in results:
                usage.cached_tokens = int(result.cached_tokens or 0)
                if result.token_ids is not None:  # the closing result of the stream
                    generated = list(result.token_ids)
                    finish = "stop" if result.finish_reason == "stop" else "length"
                    shown = scanner.feed(result.text) if result.text else ""
                elif result.token is None:
                    continue
                else:
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                    generated.append(int(result.token))
                    shown = scanner.feed(result.text)
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
            results.close()
            if done or finish == "stop_string" or generated:
                tracked = prefix_cache if usage.cached_tokens and prefix_cache is not None else own_cache
                state.update(input_ids[0].tolist() + generated, tracked)
            else:
                self.reset()
        end = time.perf_counter()
        usage.prompt_seconds = (first_token_at or end) - start
        usage.generation_seconds = end - (first_token_at or end)
        usage.generated_tokens = len(generated)
        yield Completion(text=scanner.text, usage=usage, finish_reason=finish,
                         stop_string=scanner.hit, token_ids=generated)
