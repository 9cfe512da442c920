"""llama.cpp's row layout of `llama` q_proj / k_proj weights.

llama.cpp's converter reorders the output rows of those two weights per attention head for its
interleaved (GPT-J style) rotary embedding: within each head, Hugging Face row `i * d/2 + j`
(i in 0, 1; d the head size) goes to row `2 j + i`. Converting a GGUF back (`from_gguf`) undoes
it; a LoRA trained on the Hugging Face layout and exported to GGUF applies it to its B matrix.
Both work on any array whose first axis is the output rows (quantized triples included).
"""

from __future__ import annotations

import numpy as np


def to_llama_cpp_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Hugging Face row order -> llama.cpp's."""
    half = w.shape[0] // n_heads // 2
    return np.ascontiguousarray(w.reshape(n_heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def from_llama_cpp_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's row order -> Hugging Face's (the inverse of `to_llama_cpp_rows`)."""
    half = w.shape[0] // n_heads // 2
    return np.ascontiguousarray(w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))
