"""Sentence-embedding similarity for GTA's subjective answers and image-tool arguments.

GTA's official evaluation scores a list-form answer by the best cosine similarity (clipped at 0)
between the prediction and each reference, and an image query by the similarity of tool
arguments, with the sentence model `all-mpnet-base-v2`. Two optional sources of embeddings:
a sentence-transformers model (when that package and the model are installed locally) or an
OpenAI-compatible `/v1/embeddings` endpoint. With neither, those items are reported as skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from t3edge.errors import T3Error

Encoder = Callable[[Sequence[str]], list[list[float]]]


class Similarity:
    """Cosine similarity (clipped at 0, as GTA's scorer does) over an embedding function."""

    def __init__(self, encode: Encoder, name: str) -> None:
        self._encode = encode
        self.name = name
        self._cache: dict[str, list[float]] = {}

    def _vector(self, text: str) -> list[float]:
        if text not in self._cache:
            self._cache[text] = self._encode([text])[0]
        return self._cache[text]

    def score(self, a: str, b: str) -> float:
        va, vb = self._vector(a), self._vector(b)
        na = math.sqrt(sum(x * x for x in va))
        nb = math.sqrt(sum(x * x for x in vb))
        if na == 0 or nb == 0:
            return 0.0
        return max(sum(x * y for x, y in zip(va, vb)) / (na * nb), 0.0)

    def best(self, prediction: str, references: Sequence[str]) -> float:
        """GTA's subjective score: the highest similarity to any reference (0 with none)."""
        best = 0.0
        for ref in references:
            best = max(best, self.score(prediction, ref))
        return best


def sentence_transformer(model: str) -> Similarity:
    """A local sentence-transformers model (raises T3Error when the package or model is missing)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise T3Error("sentence-transformers is not installed",
                      hint="pip install sentence-transformers, or set eval.embedding_url") from exc
    try:
        st = SentenceTransformer(model)
    except Exception as exc:  # noqa: BLE001 - any load failure means "not available here"
        raise T3Error(f"could not load the embedding model {model}: {exc}",
                      hint="download it once while online, or set eval.embedding_url") from exc

    def encode(texts: Sequence[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in st.encode(list(texts))]

    return Similarity(encode, model)


def embedding_endpoint(url: str, model: str, api_key: str = "none") -> Similarity:
    """An OpenAI-compatible embeddings endpoint (`url` is the base, e.g. http://host:8080/v1)."""
    from openai import OpenAI, OpenAIError

    client = OpenAI(base_url=url, api_key=api_key, max_retries=2, timeout=60.0)

    def encode(texts: Sequence[str]) -> list[list[float]]:
        try:
            response = client.embeddings.create(model=model, input=list(texts))
        except OpenAIError as exc:
            raise T3Error(f"embedding endpoint {url} failed: {exc}", hint="check eval.embedding_url") from exc
        return [list(item.embedding) for item in response.data]

    return Similarity(encode, f"{model} @ {url}")


def load_similarity(model: str | None, url: str | None, api_key: str = "none") -> tuple[Similarity | None, str]:
    """The configured similarity, or None with the reason it is unavailable."""
    if url:
        return embedding_endpoint(url, model or "default", api_key), ""
    if not model:
        return None, "no embedding model configured (eval.embedding_model / eval.embedding_url)"
    try:
        return sentence_transformer(model), ""
    except T3Error as exc:
        return None, str(exc)
