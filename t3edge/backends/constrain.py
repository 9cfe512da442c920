"""Constrained decoding for the in-process backends, on llguidance: a grammar over the model's
vocabulary, one token mask per generated token.

`Vocabulary` wraps a model's tokenizer for llguidance (built once per loaded model: about a second
for a large vocabulary). `TokenConstraint` is the state of one call: the tokens a grammar allows
next, applied to numpy (llama.cpp) or MLX logits, and the sampled token fed back. A fresh
constraint per call keeps every call independent, so KV prefix reuse is untouched.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from t3edge.errors import BackendError
from t3edge.step_grammar import GRAMMARS

_INSTALL_HINT = 'pip install llguidance (it comes with t3edge[llama] and t3edge[mlx])'


def _llguidance() -> Any:
    try:
        import llguidance
        import llguidance.numpy  # noqa: F401 (the mask helpers)
    except ImportError as exc:
        raise BackendError("constrained decoding needs llguidance, which is not installed",
                           hint=_INSTALL_HINT + ", or set agent.format = \"free\"") from exc
    return llguidance


class Vocabulary:
    """A model's tokens as llguidance sees them, built lazily by `build` on first use."""

    def __init__(self, build: Callable[[], Any], n_vocab: int) -> None:
        self._build = build
        self._tokenizer: Any = None
        self.n_vocab = n_vocab

    def constraint(self, grammar: str) -> TokenConstraint:
        """A fresh constraint for the named grammar (see `t3edge.step_grammar.GRAMMARS`)."""
        llg = _llguidance()
        if grammar not in GRAMMARS:
            raise BackendError(f"unknown grammar {grammar!r}", hint=f"use one of: {', '.join(GRAMMARS)}")
        if self._tokenizer is None:
            self._tokenizer = self._build()
        return TokenConstraint(llg, self._tokenizer, llg.LLMatcher.grammar_from_regex(GRAMMARS[grammar]),
                               self.n_vocab)


def llama_vocabulary(vocab: Any, n_vocab: int) -> Vocabulary:
    """The vocabulary of a llama.cpp model (`llama_model_get_vocab`)."""

    def build() -> Any:
        from llguidance.llamacpp import lltokenizer_from_vocab

        with warnings.catch_warnings():  # it reads each token with a call llama-cpp-python deprecates
            warnings.simplefilter("ignore", DeprecationWarning)
            return lltokenizer_from_vocab(vocab, n_vocab=n_vocab)

    return Vocabulary(build, n_vocab)


def hf_vocabulary(tokenizer: Any, n_vocab: int) -> Vocabulary:
    """The vocabulary of a Hugging Face tokenizer backed by the Rust `tokenizers` library (what a
    tokenizer.json gives), also inside mlx-lm's wrapper."""

    def build() -> Any:
        import copy

        import tokenizers

        rust, eos, holder = None, None, tokenizer
        for _ in range(3):  # mlx-lm wrapper -> transformers tokenizer -> tokenizers.Tokenizer
            eos = eos if eos is not None else getattr(holder, "eos_token_id", None)
            if isinstance(holder, tokenizers.Tokenizer):
                rust = holder
                break
            holder = getattr(holder, "backend_tokenizer", None) or getattr(holder, "_tokenizer", None)
        if rust is None:
            raise BackendError("constrained decoding needs a fast tokenizer (a tokenizer.json) and this "
                               "model has none", hint='set agent.format = "free" for this model')
        rust = copy.copy(rust)
        rust.no_padding()
        rust.no_truncation()
        return _llguidance().LLTokenizer(rust.to_str(), n_vocab=n_vocab, eos_token=eos)

    return Vocabulary(build, n_vocab)


class TokenConstraint:
    """One call's grammar state: `allowed()` before sampling, `accept(token)` after."""

    def __init__(self, llg: Any, tokenizer: Any, grammar: str, n_vocab: int) -> None:
        self._llg = llg
        self._matcher = llg.LLMatcher(tokenizer, grammar, log_level=0)
        if self._matcher.is_error():
            raise BackendError(f"the grammar does not compile: {self._matcher.get_error()}")
        self._bits = llg.numpy.allocate_token_bitmask(1, n_vocab)
        self.n_vocab = n_vocab

    def allowed(self) -> np.ndarray:
        """A boolean mask over the vocabulary: the tokens the grammar allows next."""
        self._llg.numpy.fill_next_token_bitmask(self._matcher, self._bits)
        self._check()
        bits = np.unpackbits(self._bits.view(np.uint8), bitorder="little")
        return bits[: self.n_vocab].astype(bool)

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """`logits` (numpy, over the vocabulary) with every token the grammar forbids at -inf."""
        allowed = self.allowed()
        n = min(len(logits), len(allowed))
        logits[:n][~allowed[:n]] = -np.inf
        logits[n:] = -np.inf
        return logits

    def accept(self, token: int) -> None:
        """Advance the grammar by the sampled token."""
        self._matcher.consume_token(token)
        self._check()

    @property
    def finished(self) -> bool:
        """The grammar is complete: only the end of generation may follow."""
        return bool(self._matcher.is_accepting())

    def _check(self) -> None:
        if self._matcher.is_error():
            raise BackendError(f"constrained decoding failed: {self._matcher.get_error()}")

    def mlx_processor(self) -> Callable[[Any, Any], Any]:
        """An mlx-lm / mlx-vlm logits processor: `(tokens so far, logits) -> masked logits`.

        It is called once per generated token, first before the first token is sampled, then with
        the previous sampled token last in `tokens`.
        """
        import mlx.core as mx

        calls = 0

        def process(tokens: Any, logits: Any) -> Any:
            nonlocal calls
            if calls:
                self.accept(int(tokens[-1].item()))
            calls += 1
            allowed = self.allowed()
            width = logits.shape[-1]
            if width > len(allowed):
                allowed = np.concatenate([allowed, np.zeros(width - len(allowed), dtype=bool)])
            return mx.where(mx.array(allowed[:width]), logits, mx.array(-np.inf, dtype=logits.dtype))

        return process
