"""Lexical text embeddings for near-duplicate removal and caption retrieval, with no model.

Words and word pairs are hashed into a fixed-size vector (sublinear counts, common words left
out) and L2-normalized, so a dot product is a cosine similarity. It finds re-worded duplicates
and captions that share the description's words; it does not know synonyms.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

DIM = 4096
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are as at be by do does for from has have how i in is it its me my of on or our "
    "that the their them then there these this those to was were what when where which who will "
    "with you your".split()
)


def _features(text: str) -> list[str]:
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


def _bucket(feature: str) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=4).digest(), "little") % DIM


def embed(texts: Sequence[str]) -> np.ndarray:
    """One unit-length row per text (a text with no words gives a zero row)."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        for feature in _features(text):
            out[row, _bucket(feature)] += 1.0
    np.sqrt(out, out=out)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


def near_duplicates(texts: Sequence[str], threshold: float) -> dict[int, int]:
    """Greedy in order: index -> the earlier kept index it nearly duplicates (cosine >= threshold)."""
    vectors = embed(texts)
    kept = np.zeros_like(vectors)
    kept_index: list[int] = []
    dupes: dict[int, int] = {}
    for i in range(len(texts)):
        if kept_index:
            sims = kept[: len(kept_index)] @ vectors[i]
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                dupes[i] = kept_index[best]
                continue
        kept[len(kept_index)] = vectors[i]
        kept_index.append(i)
    return dupes
