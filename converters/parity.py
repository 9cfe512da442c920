"""Parity of a GGUF in llama.cpp and its MLX conversion (`convert_from_gguf`) in mlx-lm.

Both sides get the same chat-templated prompt and decode greedily for `n_tokens` tokens with
llama.cpp's end-of-generation tokens masked (so neither can stop early), keeping the logits of the
first generated position. The llama.cpp side is `LlamaBackend.greedy_trace` (f32 KV cache, CPU);
the MLX side renders and tokenizes the prompt through `MLXTextBackend` and runs its mlx-lm model
with a KV cache. The report says whether the prompt tokens and the greedy tokens are equal and
how far apart the first-position logits are: the largest absolute difference, and that difference
relative to the largest |logit| of llama.cpp.

A GGUF without a chat template gets its family's (`t3edge.chat_templates`) on both sides: the
llama.cpp backend falls back to it and `convert_from_gguf` writes it into the folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from t3edge.backends.base import Message
from t3edge.gguf_check import check_gguf

N_TOKENS = 12
DEFAULT_PROMPT = "Write one sentence about the sea, then count from one to five."


@dataclass
class ParityReport:
    prompt_tokens: int
    prompt_equal: bool
    llama_ids: list[int]
    mlx_ids: list[int]
    max_abs: float  # max |llama - mlx| over the first position's logits
    max_rel: float  # max_abs / max |llama logit|
    argmax_equal: bool
    seconds_llama: float
    seconds_mlx: float

    @property
    def tokens_equal(self) -> bool:
        return self.prompt_equal and self.llama_ids == self.mlx_ids

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "tokens_equal": self.tokens_equal}, indent=2)


def check_parity(gguf: str | Path, folder: str | Path, messages: Sequence[Message] | None = None, *,
                 n_tokens: int = N_TOKENS, n_threads: int | None = None, adapter_gguf: str | Path | None = None,
                 adapter_mlx: str | Path | None = None) -> ParityReport:
    """Run both sides on `messages` (default: one user turn) and compare them; with a LoRA, the
    GGUF LoRA on the llama.cpp side and the same adapter's MLX folder on the MLX side."""
    messages = list(messages or [Message("user", DEFAULT_PROMPT)])
    check_gguf(gguf, expect_kind="model")
    t0 = time.perf_counter()
    llama_prompt, eog, llama_ids, llama_first = _llama_side(Path(gguf), messages, n_tokens, n_threads, adapter_gguf)
    t1 = time.perf_counter()
    mlx_prompt, mlx_ids, mlx_first = mlx_greedy_trace(folder, messages, n_tokens, eog, adapter_mlx)
    t2 = time.perf_counter()
    diff = float(np.abs(llama_first - mlx_first).max())
    return ParityReport(
        prompt_tokens=len(llama_prompt), prompt_equal=llama_prompt == mlx_prompt,
        llama_ids=llama_ids, mlx_ids=mlx_ids, max_abs=diff,
        max_rel=diff / float(np.abs(llama_first).max()),
        argmax_equal=int(llama_first.argmax()) == int(mlx_first.argmax()),
        seconds_llama=t1 - t0, seconds_mlx=t2 - t1)


def _llama_side(model_file: Path, messages: list[Message], n_tokens: int, n_threads: int | None,
                adapter: str | Path | None = None) -> tuple[list[int], list[int], list[int], np.ndarray]:
    """(prompt ids, end-of-generation ids, greedy ids, first-position logits) from llama.cpp on
    the CPU, the reference."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    from t3edge.backends.llama import LlamaBackend
    from t3edge.models import BackendSettings, ResolvedModel

    settings = BackendSettings(context_length=2048, n_threads=n_threads, f32_kv_cache=True, n_gpu_layers=0)
    backend = LlamaBackend(ResolvedModel(spec=str(model_file), kind="gguf", path=str(model_file)), settings,
                           adapter=str(adapter) if adapter is not None else None)
    try:
        ids, first = backend.greedy_trace(messages, n_tokens)
        text = backend.render(messages)
    finally:
        backend.close()
    with suppress_stdout_stderr(disable=False):  # llama.cpp notes its vocabulary-only context on stderr
        vocab_only = llama_cpp.Llama(model_path=str(model_file), vocab_only=True, verbose=False)
    try:
        prompt = vocab_only.tokenize(text.encode(), add_bos=False, special=True)
        vocab = llama_cpp.llama_model_get_vocab(vocab_only.model)
        eog = [t for t in range(vocab_only.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
    finally:
        vocab_only.close()
    return prompt, eog, ids, first


def mlx_greedy_trace(folder: str | Path, messages: Sequence[Message], n_tokens: int, masked: Sequence[int],
                     adapter: str | Path | None = None) -> tuple[list[int], list[int], np.ndarray]:
    """(prompt ids, greedy ids with `masked` ids never chosen, first-position logits) of the
    folder's model (with the LoRA adapter folder `adapter`, when given), with its prompt from the
    MLX text backend (chat template, tokenizer)."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    from t3edge.backends.mlx_text import MLXTextBackend
    from t3edge.models import BackendSettings, ResolvedModel

    backend = MLXTextBackend(ResolvedModel(spec=str(folder), kind="mlx", path=str(folder)), BackendSettings(),
                             adapter=str(adapter) if adapter is not None else None)
    prompt = backend.tokenize(messages)
    cache = make_prompt_cache(backend.model)
    mask = np.array(sorted(set(masked)), dtype=np.int64)
    tokens, first = mx.array([prompt]), None
    out: list[int] = []
    for _ in range(n_tokens):
        logits = np.array(backend.model(tokens, cache=cache)[0, -1].astype(mx.float32))
        if first is None:
            first = logits.copy()
        logits[mask[mask < logits.size]] = -np.inf
        out.append(int(logits.argmax()))
        tokens = mx.array([[out[-1]]])
    assert first is not None
    return prompt, out, first
