"""The backend interface (README, "Backends"): messages of text and image parts in, a stream of
text deltas out, ending with a Completion that carries token counts.

MLX, llama.cpp, OpenAI-compatible and replay backends implement `Backend.stream`; nothing above
the backends knows which one it has. Images are normalized here, once, by the one policy of
`t3edge.images`, before any backend sees them.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import BaseModel, Field

from t3edge.images import ImagePolicy, load_image, normalize_image

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "stop_string", "cancelled"]


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image by path (as the agent attaches it) or as an already loaded PIL image."""

    image: str | Path | Image.Image

    @property
    def label(self) -> str:
        return str(self.image) if not isinstance(self.image, Image.Image) else "<image>"


Part = TextPart | ImagePart


@dataclass
class Message:
    role: Role
    content: str | list[Part]

    @property
    def parts(self) -> list[Part]:
        return [TextPart(self.content)] if isinstance(self.content, str) else list(self.content)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.parts if isinstance(p, ImagePart)]


class GenerationConfig(BaseModel):
    """Sampling settings for one call. Temperature 0 is greedy."""

    max_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0, description="above 1 discourages recently seen tokens")
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    grammar: Literal["step"] | None = Field(
        None, description="a grammar the output must follow (t3edge.step_grammar); backends that "
                          "cannot enforce one generate freely and say so in the Completion")


@dataclass
class Usage:
    """Token counts and timings of one call. `cached_tokens` were reused, not prefilled."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    generation_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.generation_seconds if self.generation_seconds > 0 else 0.0

    @property
    def prefill_tokens_per_second(self) -> float:
        new = self.prompt_tokens - self.cached_tokens
        return new / self.prompt_seconds if self.prompt_seconds > 0 else 0.0


@dataclass
class TextDelta:
    """Newly generated text (never part of a stop string)."""

    text: str


@dataclass
class Completion:
    """The last item of every stream: the whole text (stop string removed) and its usage."""

    text: str
    usage: Usage
    finish_reason: FinishReason
    stop_string: str | None = None
    token_ids: list[int] = field(default_factory=list)
    grammar: str | None = None  # the grammar that was enforced (None: free generation)


StreamItem = TextDelta | Completion


class StopScanner:
    """Finds stop strings in streamed text and holds back any tail that may begin one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._text = ""
        self._emitted = 0
        self.hit: str | None = None

    def feed(self, delta: str) -> str:
        """Add generated text; return what can safely be shown. Sets `hit` on a stop string."""
        self._text += delta
        first: tuple[int, str] | None = None
        for stop in self.stops:
            pos = self._text.find(stop, max(0, self._emitted - len(stop)))
            if pos != -1 and (first is None or pos < first[0]):
                first = (pos, stop)
        if first is not None:
            self.hit = first[1]
            self._text = self._text[: first[0]]
            return self._take(len(self._text))
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self._text)), 0, -1):
                if self._text.endswith(stop[:k]):
                    hold = max(hold, k)
                    break
        return self._take(len(self._text) - hold)

    def flush(self) -> str:
        """At the end of generation: release the held-back tail."""
        return self._take(len(self._text))

    @property
    def text(self) -> str:
        return self._text

    def _take(self, upto: int) -> str:
        upto = max(upto, self._emitted)
        out = self._text[self._emitted : upto]
        self._emitted = upto
        return out


class Backend(abc.ABC):
    """A loaded model that turns messages into streamed text."""

    name: str = "base"

    def __init__(self, model_id: str, *, context_length: int | None = None,
                 supports_images: bool = True, image_policy: ImagePolicy | None = None) -> None:
        self.model_id = model_id
        self.context_length = context_length
        self.supports_images = supports_images
        self.image_policy = image_policy or ImagePolicy()
        self.generation_overrides: dict[str, float | int] = {}  # sampling this model needs (registry)
        self._image_cache: dict[tuple[str, float, int], Image.Image] = {}

    @abc.abstractmethod
    def stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        """Yield TextDelta items, then exactly one Completion.

        Closing the generator early (a cancelled run) must leave the backend usable. Callers in
        several threads may share a backend: one whose model runs in this process takes one
        call at a time (the others wait for the stream before them to end or be closed).
        """

    def generate(self, messages: Sequence[Message], config: GenerationConfig) -> Completion:
        """Run `stream` to its end and return the Completion."""
        completion: Completion | None = None
        for item in self.stream(messages, config):
            if isinstance(item, Completion):
                completion = item
        assert completion is not None, f"{self.name} backend ended a stream without a Completion"
        return completion

    def can_constrain(self) -> bool:
        """Whether this backend enforces `GenerationConfig.grammar` (else it generates freely)."""
        return False

    def count_tokens(self, text: str) -> int | None:
        """How many tokens `text` takes for this model (None when the backend cannot tell)."""
        return None

    def reset(self) -> None:
        """Forget any cached conversation state (KV prefix)."""

    def close(self) -> None:
        """Release the model."""

    def prepared_images(self, messages: Sequence[Message]) -> list[Image.Image]:
        """Every image of `messages`, in order, loaded and normalized by the one policy.

        Results are cached by (path, mtime, size), so an agent's repeated steps don't redo it.
        """
        out: list[Image.Image] = []
        for msg in messages:
            for part in msg.images:
                out.append(self._prepare(part))
        return out

    def _prepare(self, part: ImagePart) -> Image.Image:
        if isinstance(part.image, Image.Image):
            return normalize_image(part.image, self.image_policy)
        path = Path(part.image)
        stat = path.stat() if path.exists() else None
        key = (str(path.resolve()), stat.st_mtime if stat else 0.0, stat.st_size if stat else 0)
        cached = self._image_cache.get(key)
        if cached is None:
            cached = normalize_image(load_image(path), self.image_policy)
            self._image_cache[key] = cached
        return cached
