"""Parity of a GGUF in llama.cpp and its MLX conversion (`convert_from_gguf`) in mlx-lm.

Both sides get the same chat-templated prompt and decode greedily for `n_tokens` tokens with
llama.cpp's end-of-generation tokens masked (so neither can stop early), keeping the logits of the
first generated position. The llama.cpp side is `LlamaBackend.greedy_trace` (f32 KV cache); the
MLX side runs the mlx-lm model with its KV cache. The report says whether the prompt tokens and the
greedy tokens are equal and how far apart the first-position logits are: the largest absolute
difference, and that difference relative to the largest |logit| of llama.cpp.

A GGUF without a chat template is given the folder's template in a temporary copy (only the
header changes), because the llama.cpp backend needs one.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from t3edge.backends.base import Message
from t3edge.errors import BadInput
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
                 n_tokens: int = N_TOKENS, n_threads: int | None = None) -> ParityReport:
    """Run both sides on `messages` (default: one user turn) and compare them."""
    import time

    messages = list(messages or [Message("user", DEFAULT_PROMPT)])
    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="t3edge-parity-") as tmp:
        model_file = _templated(Path(gguf), folder, Path(tmp))
        t0 = time.perf_counter()
        llama_prompt, eog, llama_ids, llama_first = _llama_side(model_file, messages, n_tokens, n_threads)
        t1 = time.perf_counter()
    mlx_prompt, mlx_ids, mlx_first = mlx_greedy_trace(folder, messages, n_tokens, eog)
    t2 = time.perf_counter()
    diff = float(np.abs(llama_first - mlx_first).max())
    return ParityReport(
        prompt_tokens=len(llama_prompt), prompt_equal=llama_prompt == mlx_prompt,
        llama_ids=llama_ids, mlx_ids=mlx_ids, max_abs=diff,
        max_rel=diff / float(np.abs(llama_first).max()),
        argmax_equal=int(llama_first.argmax()) == int(mlx_first.argmax()),
        seconds_llama=t1 - t0, seconds_mlx=t2 - t1)


def _llama_side(model_file: Path, messages: list[Message], n_tokens: int,
                n_threads: int | None) -> tuple[list[int], list[int], list[int], np.ndarray]:
    import llama_cpp

    from t3edge.backends.llama import LlamaBackend
    from t3edge.models import BackendSettings, ResolvedModel

    settings = BackendSettings(context_length=2048, n_threads=n_threads, f32_kv_cache=True, n_gpu_layers=0)
    backend = LlamaBackend(ResolvedModel(spec=str(model_file), kind="gguf", path=str(model_file)), settings)
    try:
        ids, first = backend.greedy_trace(messages, n_tokens)
        text = backend.render(messages)
    finally:
        backend.close()
    vocab_only = llama_cpp.Llama(model_path=str(model_file), vocab_only=True, verbose=False)
    try:
        prompt = vocab_only.tokenize(text.encode(), add_bos=False, special=True)
        vocab = llama_cpp.llama_model_get_vocab(vocab_only.model)
        eog = [t for t in range(vocab_only.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
    finally:
        vocab_only.close()
    return prompt, eog, ids, first


def mlx_greedy_trace(folder: str | Path, messages: Sequence[Message], n_tokens: int,
                     masked: Sequence[int]) -> tuple[list[int], list[int], np.ndarray]:
    """(prompt ids, greedy ids with `masked` ids never chosen, first-position logits) from mlx-lm."""
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.models.cache import make_prompt_cache

    from t3edge.backends.mlx import hf_messages

    model, tokenizer = load(str(folder))
    text = tokenizer.apply_chat_template(hf_messages(messages), tokenize=False, add_generation_prompt=True)
    prompt = list(tokenizer.encode(text, add_special_tokens=False))
    cache = make_prompt_cache(model)
    mask = np.array(sorted(set(masked)), dtype=np.int64)
    tokens, first = mx.array([prompt]), None
    out: list[int] = []
    for _ in range(n_tokens):
        logits = np.array(model(tokens, cache=cache)[0, -1].astype(mx.float32))
        if first is None:
            first = logits.copy()
        if mask.size:
            logits[mask[mask < logits.size]] = -np.inf
        out.append(int(logits.argmax()))
        tokens = mx.array([[out[-1]]])
    assert first is not None
    return prompt, out, first


# --- a GGUF copy with a chat template -------------------------------------------------------------

def _templated(gguf: Path, folder: Path, tmp: Path) -> Path:
    """`gguf` itself, or a copy carrying the folder's chat template if the GGUF has none."""
    info = check_gguf(gguf, expect_kind="model")
    if info.metadata.get("tokenizer.chat_template"):
        return gguf
    config_path = folder / "tokenizer_config.json"
    template = json.loads(config_path.read_text()).get("chat_template") if config_path.is_file() else None
    if not template:
        raise BadInput(f"neither {gguf} nor {folder} has a chat template",
                       hint="convert again with --chat-template FILE")
    return add_string_metadata(gguf, tmp / gguf.name, "tokenizer.chat_template", template)


_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def _kv_end(f, n_kv: int) -> int:  # noqa: ANN001 (binary file)
    """The offset after the last metadata entry (the file was validated by check_gguf)."""
    def skip_value(vtype: int) -> None:
        if vtype in _SCALAR_SIZES:
            f.seek(_SCALAR_SIZES[vtype], 1)
        elif vtype == _STRING:
            f.seek(struct.unpack("<Q", f.read(8))[0], 1)
        else:
            etype, count = struct.unpack("<IQ", f.read(12))
            if etype in _SCALAR_SIZES:
                f.seek(_SCALAR_SIZES[etype] * count, 1)
            else:
                for _ in range(count):
                    skip_value(etype)

    for _ in range(n_kv):
        f.seek(struct.unpack("<Q", f.read(8))[0], 1)
        skip_value(struct.unpack("<I", f.read(4))[0])
    return f.tell()


def add_string_metadata(src: Path, dst: Path, key: str, value: str) -> Path:
    """Copy a GGUF adding one string metadata entry (tensor data is copied unchanged)."""
    info = check_gguf(src)
    if key in info.metadata:
        raise BadInput(f"{src} already has {key}")
    alignment = int(info.metadata.get("general.alignment", 32))
    with open(src, "rb") as f:
        head = f.read(24)
        n_kv = struct.unpack("<Q", head[16:24])[0]
        kv_end = _kv_end(f, n_kv)
        f.seek(24)
        kvs = f.read(kv_end - 24)
        tensor_table = f.read(_table_end(info) - kv_end)
        k, v = key.encode(), value.encode()
        entry = struct.pack("<Q", len(k)) + k + struct.pack("<I", _STRING) + struct.pack("<Q", len(v)) + v
        header = head[:16] + struct.pack("<Q", n_kv + 1) + kvs + entry + tensor_table
        header += b"\0" * (-len(header) % alignment)
        with open(dst, "wb") as out:
            out.write(header)
            f.seek(info.data_offset)
            shutil.copyfileobj(f, out, 1 << 24)
    check_gguf(dst, expect_kind=info.kind)
    return dst


def _table_end(info) -> int:  # noqa: ANN001 (GGUFInfo)
    """The offset after the tensor table: the data offset less its alignment padding."""
    with open(info.path, "rb") as f:
        f.seek(24)
        n_kv = struct.unpack("<Q", _read_at(info.path, 16, 8))[0]
        pos = _kv_end(f, n_kv)
        for _ in info.tensors:
            f.seek(struct.unpack("<Q", f.read(8))[0], 1)
            n_dims = struct.unpack("<I", f.read(4))[0]
            f.seek(8 * n_dims + 4 + 8, 1)
        pos = f.tell()
    return pos


def _read_at(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)
