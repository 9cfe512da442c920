"""The llama.cpp backend on llama-cpp-python: a text GGUF, an optional mmproj for images (mtmd),
an optional GGUF LoRA.

llama-cpp-python's multimodal chat handlers clear the KV cache on every call, so an agent would
re-encode its whole history and every image at each step. This backend keeps the KV state: each
call's prompt is rendered with the GGUF's chat template, split by mtmd into text tokens and image
chunks, and compared piece by piece with what the KV cache holds (the previous prompt plus the
tokens generated after it). The divergent tail is removed from the cache (`llama_memory_seq_rm`)
and only the new pieces are evaluated, so a cached image is never encoded again. The reused
count is reported as `Usage.cached_tokens`.

Every model, mmproj and adapter file is validated by `t3edge.gguf_check` before llama.cpp opens
it, because llama.cpp aborts the process on a malformed file.

On CPUs that report AMX, llama.cpp's extra CPU buffer types (AMX / repacked quantized weights)
crash with a segmentation fault on the first quantized matmul on some machines (seen on a
virtual machine with AMX flags), so they are off there by default (`backend.llama_extra_buffers`).
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from t3edge.backends.base import (
    Backend, Completion, GenerationConfig, Message, StopScanner, StreamItem, TextDelta, TextPart,
    Usage,
)
from t3edge.backends.constrain import TokenConstraint, Vocabulary, llama_vocabulary
from t3edge.chat_templates import fallback_template
from t3edge.errors import BackendError, ContextFull, T3Error
from t3edge.gguf_check import GGUFInfo, check_gguf, check_lora_fits
from t3edge.images import ImagePolicy
from t3edge.backends.settings import BackendSettings, ModelFiles

DEFAULT_CONTEXT = 8192
N_BATCH = 512
REPEAT_WINDOW = 64  # tokens the repetition penalty looks back on (llama.cpp's default)


@dataclass(frozen=True)
class Piece:
    """One unit the KV cache holds: a text token, or a whole image (never split)."""

    kind: str  # "text" | "image"
    key: int | str  # token id, or the image's content hash
    n_tokens: int
    n_pos: int  # positions it occupies (an M-RoPE image uses fewer positions than tokens)


@dataclass
class _Prompt:
    pieces: list[Piece]
    chunks: dict[int, Any]  # piece index -> mtmd image chunk
    holder: Any  # the mtmd chunk list (freed by the caller)


class LlamaBackend(Backend):
    name = "llama"

    def __init__(self, resolved: ModelFiles, settings: BackendSettings,
                 adapter: str | None = None) -> None:
        if not resolved.path:
            raise BackendError(f"{resolved.spec}: no GGUF file to load")
        try:
            import llama_cpp
        except ImportError as exc:
            raise BackendError("llama-cpp-python is not installed",
                               hint='pip install "t3edge[llama]" (see the README for GPU builds)') from exc
        self._lc = llama_cpp
        model_info = self._validated(resolved.path, "model")
        proj_info = self._validated(resolved.mmproj, "mmproj") if resolved.mmproj else None
        if proj_info is not None:
            _check_projection(model_info, proj_info)
        if adapter is not None:
            if Path(adapter).is_dir():
                raise BackendError(f"{adapter} is an adapter folder; llama.cpp needs a GGUF LoRA",
                                   hint=f"convert it: t3edge convert lora to-gguf {adapter} adapter.gguf "
                                        "--base <the base model>")
            lora_info = self._validated(adapter, "adapter")
            try:
                check_lora_fits(model_info, lora_info)
            except T3Error as exc:
                raise BackendError(str(exc)) from exc
        n_ctx_train = int(model_info.metadata.get(f"{model_info.architecture}.context_length", DEFAULT_CONTEXT))
        n_ctx = settings.context_length or min(n_ctx_train, DEFAULT_CONTEXT)
        super().__init__(resolved.spec, context_length=n_ctx, supports_images=proj_info is not None,
                         image_policy=_policy(proj_info, settings))
        self.adapter = adapter
        kv_type = llama_cpp.GGML_TYPE_F32 if settings.f32_kv_cache else None
        try:
            with extra_buffer_types(settings.llama_extra_buffers):
                self._llm = llama_cpp.Llama(
                    model_path=str(resolved.path), n_ctx=n_ctx, n_batch=N_BATCH, n_ubatch=N_BATCH,
                    n_threads=settings.n_threads, n_gpu_layers=settings.n_gpu_layers,
                    lora_path=adapter, type_k=kv_type, type_v=kv_type, flash_attn=False, verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendError(f"llama.cpp could not load {resolved.path}: {exc}",
                               hint="convert the model again, or check it with: t3edge convert inspect") from exc
        try:
            self._mtmd = self._init_mtmd(str(resolved.mmproj), settings) if proj_info else None
            template = self._llm.metadata.get("tokenizer.chat_template") or fallback_template(
                model_info.architecture)  # a base model ships none: its family's template
            self._template = _compile_template(template)
        except BackendError:
            self._llm.close()
            raise
        self._ctx = self._llm._ctx
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._n_vocab = self._llm.n_vocab()
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self._cache: list[Piece] = []
        self._vocabulary: Vocabulary = llama_vocabulary(self._vocab, self._n_vocab)
        self._lock = threading.Lock()

    # --- loading -------------------------------------------------------------------------------

    @staticmethod
    def _validated(path: str | Path, kind: str) -> GGUFInfo:
        try:
            return check_gguf(path, expect_kind=kind)
        except T3Error as exc:
            raise BackendError(str(exc)) from exc

    def _init_mtmd(self, mmproj: str, settings: BackendSettings) -> Any:
        from llama_cpp import mtmd_cpp
        from llama_cpp._logger import llama_log_callback
        from llama_cpp._utils import suppress_stdout_stderr

        mtmd_cpp.mtmd_log_set(llama_log_callback, None)  # mtmd logs like llama.cpp: errors only
        mtmd_cpp.mtmd_helper_log_set(llama_log_callback, None)
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = settings.n_gpu_layers != 0
        params.print_timings = False
        params.n_threads = self._llm.n_threads
        params.flash_attn_type = self._lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.warmup = False
        with suppress_stdout_stderr(disable=False):  # clip prints load notes to stderr
            ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj).encode(), self._llm.model, params)
        if ctx is None:
            raise BackendError(f"llama.cpp could not load the vision projector {mmproj}",
                               hint="check that it belongs to this model (t3edge convert inspect)")
        if not mtmd_cpp.mtmd_support_vision(ctx):
            mtmd_cpp.mtmd_free(ctx)
            raise BackendError(f"{mmproj} has no vision encoder")
        return ctx

    def close(self) -> None:
        from llama_cpp import mtmd_cpp

        if self._mtmd is not None:
            mtmd_cpp.mtmd_free(self._mtmd)
            self._mtmd = None
        if self._batch is not None:
            self._lc.llama_batch_free(self._batch)
            self._batch = None
        self._llm.close()
        self._cache = []

    def can_constrain(self) -> bool:
        return True

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=True))

    def reset(self) -> None:
        with self._lock:
            self._ctx.kv_cache_clear()
            self._cache = []

    # --- prompt --------------------------------------------------------------------------------

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text: the GGUF's chat template with each image as mtmd's media marker."""
        from llama_cpp import mtmd_cpp

        marker = mtmd_cpp.mtmd_default_marker().decode()
        rendered = []
        for m in messages:
            if isinstance(m.content, str) or not m.images:  # many templates take only strings
                rendered.append({"role": m.role, "content": m.text})
            else:
                rendered.append({"role": m.role, "content": [
                    {"type": "text", "text": p.text if isinstance(p, TextPart) else marker} for p in m.parts]})
        return self._template.render(
            messages=rendered, add_generation_prompt=True,
            bos_token=self._piece_text(self._llm.token_bos()),
            eos_token=self._piece_text(self._llm.token_eos()),
        )

    def _piece_text(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    def _tokenize(self, messages: Sequence[Message]) -> _Prompt:
        text = self.render(messages)
        images = self.prepared_images(messages)
        if images and self._mtmd is None:
            raise BackendError(f"{self.model_id} has no vision projector (mmproj), so it cannot see images",
                               hint="put the mmproj-*.gguf next to the model file")
        if self._mtmd is None:
            tokens = self._llm.tokenize(text.encode(), add_bos=False, special=True)
            return _Prompt([Piece("text", t, 1, 1) for t in tokens], {}, None)
        return self._mtmd_tokenize(text, images)

    def _mtmd_tokenize(self, text: str, images: list) -> _Prompt:  # noqa: ANN001 (PIL images)
        from llama_cpp import mtmd_cpp

        bitmaps, keys = [], []
        for img in images:
            raw = img.tobytes()
            buf = (ctypes.c_uint8 * len(raw)).from_buffer_copy(raw)
            bitmap = mtmd_cpp.mtmd_bitmap_init(img.width, img.height, buf)
            if bitmap is None:
                raise BackendError("mtmd could not take an image")
            bitmaps.append(bitmap)
            keys.append(hashlib.sha1(raw + f"{img.size}".encode()).hexdigest())
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        try:
            inp = mtmd_cpp.mtmd_input_text()
            encoded = text.encode()
            inp.text, inp.text_len, inp.add_special, inp.parse_special = encoded, len(encoded), False, True
            array = (mtmd_cpp.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            rc = mtmd_cpp.mtmd_tokenize(self._mtmd, chunks, ctypes.byref(inp), array, len(bitmaps))
            if rc != 0:
                mtmd_cpp.mtmd_input_chunks_free(chunks)
                raise BackendError(f"mtmd could not tokenize the prompt (code {rc}): "
                                   f"{len(bitmaps)} images for the prompt's image markers")
        finally:
            for b in bitmaps:
                mtmd_cpp.mtmd_bitmap_free(b)
        pieces: list[Piece] = []
        image_chunks: dict[int, Any] = {}
        image_no = 0
        for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
            kind = mtmd_cpp.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                pieces.extend(Piece("text", int(ptr[j]), 1, 1) for j in range(n.value))
            elif kind == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                image_chunks[len(pieces)] = chunk
                pieces.append(Piece("image", keys[image_no], mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk),
                                    mtmd_cpp.mtmd_input_chunk_get_n_pos(chunk)))
                image_no += 1
            else:
                mtmd_cpp.mtmd_input_chunks_free(chunks)
                raise BackendError("this backend handles text and images only (got audio)")
        return _Prompt(pieces, image_chunks, chunks)

    # --- KV cache ------------------------------------------------------------------------------

    def _sync(self, prompt: _Prompt) -> int:
        """Make the KV cache hold exactly `prompt`, evaluating only what it lacks.

        Returns how many prompt tokens were reused. Logits of the last prompt piece are ready after.
        """
        new = prompt.pieces
        if not new:
            raise BackendError("empty prompt")
        common = 0
        for a, b in zip(self._cache, new):
            if a != b:
                break
            common += 1
        if common == len(new):
            common -= 1  # re-evaluate the last piece to get its logits
        n_past = sum(p.n_pos for p in new[:common])
        if common < len(self._cache):
            self._lc.llama_memory_seq_rm(self._lc.llama_get_memory(self._ctx.ctx), 0, n_past, -1)
            self._cache = self._cache[:common]
        if self._cache_positions(new) > (self.context_length or DEFAULT_CONTEXT):
            raise ContextFull(
                f"the prompt needs {self._cache_positions(new)} positions, the context holds "
                f"{self.context_length}", hint="raise backend.context_length or shorten the conversation")
        try:
            self._evaluate(prompt, common, n_past)
        except BackendError:
            self._ctx.kv_cache_clear()  # a failed batch leaves the cache in an unknown state
            self._cache = []
            raise
        return sum(p.n_tokens for p in new[:common])

    def _evaluate(self, prompt: _Prompt, start: int, n_past: int) -> None:
        """Evaluate prompt pieces from `start` (text in batches, each image as one chunk)."""
        new = prompt.pieces
        i = start
        while i < len(new):
            if new[i].kind == "image":
                n_past = self._eval_image(prompt.chunks[i], n_past, last=i == len(new) - 1)
                self._cache.append(new[i])
                i += 1
                continue
            j = i
            while j < len(new) and new[j].kind == "text" and j - i < N_BATCH:
                j += 1
            n_past = self._decode([int(p.key) for p in new[i:j]], n_past, logits_last=j == len(new))
            self._cache.extend(new[i:j])
            i = j

    @staticmethod
    def _cache_positions(pieces: Sequence[Piece]) -> int:
        return sum(p.n_pos for p in pieces)

    def _decode(self, tokens: list[int], n_past: int, *, logits_last: bool) -> int:
        b = self._batch
        b.n_tokens = len(tokens)
        for k, tok in enumerate(tokens):
            b.token[k] = tok
            b.pos[k] = n_past + k
            b.n_seq_id[k] = 1
            b.seq_id[k][0] = 0
            b.logits[k] = logits_last and k == len(tokens) - 1
        rc = self._lc.llama_decode(self._ctx.ctx, b)
        if rc != 0:
            raise BackendError(f"llama_decode failed (code {rc})",
                               hint="the context may be full: raise backend.context_length")
        return n_past + len(tokens)

    def _eval_image(self, chunk: Any, n_past: int, *, last: bool) -> int:
        from llama_cpp import mtmd_cpp

        new_past = self._lc.llama_pos(0)
        rc = mtmd_cpp.mtmd_helper_eval_chunk_single(
            self._mtmd, self._ctx.ctx, chunk, self._lc.llama_pos(n_past), self._lc.llama_seq_id(0),
            N_BATCH, last, ctypes.byref(new_past))
        if rc != 0:
            raise BackendError(f"llama.cpp could not evaluate an image (code {rc})")
        return int(new_past.value)

    def _logits(self) -> np.ndarray:
        ptr = self._lc.llama_get_logits_ith(self._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()

    def _is_eog(self, token: int) -> bool:
        return bool(self._lc.llama_vocab_is_eog(self._vocab, token))

    # --- generation ----------------------------------------------------------------------------

    def prefill(self, messages: Sequence[Message]) -> tuple[int, int]:
        """Bring the KV cache to `messages`' prompt; return (prompt tokens, reused tokens)."""
        with self._lock:
            prompt = self._tokenize(messages)
            try:
                cached = self._sync(prompt)
            finally:
                self._free_chunks(prompt)
            return sum(p.n_tokens for p in prompt.pieces), cached

    def greedy_trace(self, messages: Sequence[Message], n_tokens: int) -> tuple[list[int], np.ndarray]:
        """Greedy token ids with end-of-generation tokens masked, and the logits at the first
        generated position: a backend-independent trace for parity checks."""
        self.prefill(messages)
        with self._lock:
            first = self._logits()
            logits, out = first.copy(), []
            eog = np.array([self._is_eog(t) for t in range(self._n_vocab)])
            n_past = self._cache_positions(self._cache)
            for _ in range(n_tokens):
                logits[eog] = -np.inf
                tok = int(np.argmax(logits))
                out.append(tok)
                n_past = self._decode([tok], n_past, logits_last=True)
                self._cache.append(Piece("text", tok, 1, 1))
                logits = self._logits()
            return out, first

    def stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        with self._lock:
            t0 = time.perf_counter()
            prompt = self._tokenize(messages)
            try:
                cached = self._sync(prompt)
            finally:
                self._free_chunks(prompt)
            usage = Usage(prompt_tokens=sum(p.n_tokens for p in prompt.pieces), cached_tokens=cached,
                          prompt_seconds=time.perf_counter() - t0)
            t1 = time.perf_counter()
            rng = np.random.default_rng(config.seed)
            scanner = StopScanner(config.stop)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            n_past = self._cache_positions(self._cache)
            ids: list[int] = []
            finish = "length"
            recent = [int(p.key) for p in self._cache[-REPEAT_WINDOW:] if p.kind == "text"]
            constraint: TokenConstraint | None = (
                self._vocabulary.constraint(config.grammar) if config.grammar else None)
            while len(ids) < config.max_tokens:
                logits = self._logits()
                tok = _sample(constraint.mask(logits) if constraint else logits, config, rng, recent)
                if self._is_eog(tok):
                    finish = "stop"
                    break
                if constraint is not None:
                    constraint.accept(tok)
                ids.append(tok)
                shown = scanner.feed(decoder.decode(self._llm.detokenize([tok])))
                if shown:
                    yield TextDelta(shown)
                if scanner.hit is not None:
                    finish = "stop_string"
                    break
                if len(ids) >= config.max_tokens:
                    break
                if n_past + 1 > (self.context_length or DEFAULT_CONTEXT):
                    break
                n_past = self._decode([tok], n_past, logits_last=True)
                self._cache.append(Piece("text", tok, 1, 1))
                recent = [*recent[-REPEAT_WINDOW + 1:], tok]
            if scanner.hit is None:
                tail = scanner.feed(decoder.decode(b"", final=True)) + scanner.flush()
                if tail:
                    yield TextDelta(tail)
            usage.generated_tokens = len(ids)
            usage.generation_seconds = time.perf_counter() - t1
            yield Completion(text=scanner.text, usage=usage, finish_reason=finish,  # type: ignore[arg-type]
                             stop_string=scanner.hit, token_ids=ids, grammar=config.grammar)

    def _free_chunks(self, prompt: _Prompt) -> None:
        if prompt.holder is not None:
            from llama_cpp import mtmd_cpp

            mtmd_cpp.mtmd_input_chunks_free(prompt.holder)
            prompt.holder = None


def _sample(logits: np.ndarray, config: GenerationConfig, rng: np.random.Generator,
            recent: Sequence[int] = ()) -> int:
    """The next token: greedy at temperature 0, else top-p sampling; a repetition penalty first
    divides the positive logits (multiplies the negative ones) of the `recent` tokens, as
    llama.cpp and Hugging Face do."""
    if config.repetition_penalty != 1.0 and len(recent):
        seen = np.unique(np.asarray(recent, dtype=np.int64))
        vals = logits[seen]
        logits[seen] = np.where(vals > 0, vals / config.repetition_penalty, vals * config.repetition_penalty)
    if config.temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / config.temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    if config.top_p < 1.0:
        order = np.argsort(-p)
        keep = np.cumsum(p[order]) - p[order] < config.top_p
        mask = np.zeros_like(p, dtype=bool)
        mask[order[keep]] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    return int(rng.choice(len(p), p=p))


def cpu_has_amx() -> bool:
    """Whether the CPU reports AMX tiles (Linux /proc/cpuinfo; False elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        return False
    return False


@contextlib.contextmanager
def extra_buffer_types(enabled: bool | None) -> Iterator[None]:
    """Models loaded inside use llama.cpp's extra CPU buffer types only if `enabled` (None: unless
    the CPU reports AMX). llama-cpp-python's `Llama` does not expose the switch, so its default
    model parameters are wrapped while the model loads."""
    import llama_cpp.llama_cpp as lib

    if enabled is None:
        enabled = not cpu_has_amx()
    if enabled:
        yield
        return
    default = lib.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = default()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        lib.llama_model_default_params = default


def _check_projection(model: GGUFInfo, proj: GGUFInfo) -> None:
    """The mmproj must project into the text model's embedding width."""
    width = model.metadata.get(f"{model.architecture}.embedding_length")
    out = proj.metadata.get("clip.vision.projection_dim")
    if width is not None and out is not None and width != out:
        raise BackendError(f"{proj.path} projects images to {out} values, the model {model.path} "
                           f"embeds tokens in {width}", hint="use the mmproj converted with this model")


def _policy(proj: GGUFInfo | None, settings: BackendSettings) -> ImagePolicy:
    """The one image policy, from the mmproj's patch/merge sizes and pixel limits where present."""
    if proj is None:
        return ImagePolicy(max_pixels=settings.max_image_pixels)
    meta, default = proj.metadata, ImagePolicy()
    return ImagePolicy(
        patch_size=int(meta.get("clip.vision.patch_size", default.patch_size)),
        merge_size=int(meta.get("clip.vision.spatial_merge_size", default.merge_size)),
        min_pixels=int(meta.get("clip.vision.image_min_pixels", default.min_pixels)),
        max_pixels=min(int(meta.get("clip.vision.image_max_pixels", settings.max_image_pixels)),
                       settings.max_image_pixels),
    )


def _compile_template(source: str) -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise BackendError(f"the chat template rejected the conversation: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise BackendError(f"the GGUF's chat template does not compile: {exc}") from exc
