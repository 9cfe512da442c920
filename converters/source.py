"""Read a checkpoint folder lazily, one tensor at a time, in Hugging Face names and layouts.

A source is a Hugging Face folder (`model.safetensors` or shards) or an MLX folder written by
mlx-vlm (float or quantized). Tensors are memory-mapped from the safetensors files (parsed here,
so bf16 needs no torch) and handed out one at a time as float32 numpy arrays, so a conversion's
peak memory stays near its largest tensor. MLX names and layouts are mapped back to the
Hugging Face ones (`language_model.model.*` -> `model.*`, `vision_tower.*` -> `visual.*`,
conv weights (O,T,H,W,I) -> (O,I,T,H,W), quantized weights dequantized).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t3edge.errors import BadInput

SUPPORTED_ARCHS = ("qwen2_vl", "qwen2_5_vl")
TEXT_ARCHS = ("llama", "gemma3_text")  # text models (from `t3edge convert from-gguf`): adapters only

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "U32": np.dtype("<u4"),
    "BOOL": np.dtype("?"),
}


# MLX module-path prefixes (mlx-vlm's Qwen2-VL layout) and their Hugging Face counterparts
_MLX_HF_PREFIXES = (("language_model.model.", "model."), ("language_model.lm_head", "lm_head"),
                    ("vision_tower.", "visual."))
# checkpoints saved by newer transformers nest the parts under model.*
_NEW_HF_PREFIXES = (("model.language_model.", "model."), ("model.visual.", "visual."))


def hf_name(name: str) -> str:
    """The hub-layout name of an MLX or newer-transformers tensor or module path."""
    for other, hub in _MLX_HF_PREFIXES + _NEW_HF_PREFIXES:
        if name.startswith(other):
            return hub + name[len(other):]
    return name


def mlx_name(hf: str) -> str:
    """The MLX name of a Hugging Face tensor or module path."""
    for m, h in _MLX_HF_PREFIXES:
        if hf.startswith(h):
            return m + hf[len(h):]
    return hf


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor's bytes are in a safetensors file."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset
    nbytes: int


def read_safetensors_index(path: Path) -> dict[str, StoredTensor]:
    """Parse one safetensors header and check every tensor lies inside the file."""
    size = os.path.getsize(path)
    bad = f"{path} is not a valid safetensors file"
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise BadInput(f"{bad}: shorter than its header", hint="the file is truncated; copy it again")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 1 << 30:
            raise BadInput(f"{bad}: header length {n} exceeds the file", hint="the file is truncated or corrupt")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInput(f"{bad}: unreadable header ({exc})", hint="the file is corrupt") from exc
    if not isinstance(header, dict):
        raise BadInput(f"{bad}: header is not an object")
    out: dict[str, StoredTensor] = {}
    base = 8 + n
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (a, b) = meta["dtype"], tuple(int(d) for d in meta["shape"]), meta["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"{bad}: malformed entry for {name!r}") from exc
        if dtype not in _DTYPES:
            raise BadInput(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        expected = int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype].itemsize
        if b - a != expected or a < 0:
            raise BadInput(f"{bad}: tensor {name!r} has {b - a} bytes, its shape needs {expected}")
        if base + b > size:
            raise BadInput(f"{path} is truncated: tensor {name!r} ends at byte {base + b}, "
                           f"the file has {size}", hint="copy or download the file again")
        out[name] = StoredTensor(path, dtype, shape, base + a, b - a)
    return out


def load_stored(t: StoredTensor) -> np.ndarray:
    """The tensor's values (memory-mapped, then converted to float32 where floating)."""
    raw = np.memmap(t.file, dtype=_DTYPES[t.dtype], mode="r", offset=t.start,
                    shape=t.shape if t.shape else (1,))
    if t.dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32).reshape(t.shape)
    if t.dtype in ("F16", "F64"):
        return raw.astype(np.float32).reshape(t.shape)
    return np.array(raw).reshape(t.shape)


class ModelSource:
    """A checkpoint folder, its config and its tensors under Hugging Face names."""

    def __init__(self, folder: str | Path, archs: Sequence[str] = SUPPORTED_ARCHS) -> None:
        self.folder = Path(folder)
        cfg_path = self.folder / "config.json"
        if not cfg_path.is_file():
            raise BadInput(f"{self.folder} has no config.json",
                           hint="give a Hugging Face or MLX model folder")
        try:
            self.config: dict = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise BadInput(f"{cfg_path} is not valid JSON: {exc}") from exc
        self.arch = str(self.config.get("model_type", ""))
        if self.arch not in archs:
            raise BadInput(
                f"unsupported architecture {self.arch or '(none)'!r} in {cfg_path}",
                hint=f"supported architectures: {', '.join(archs)}",
            )
        files = sorted(self.folder.glob("*.safetensors"))
        if not files:
            raise BadInput(f"{self.folder} has no .safetensors weights",
                           hint="PyTorch .bin checkpoints are not supported; save as safetensors")
        stored: dict[str, StoredTensor] = {}
        for f in files:
            stored.update(read_safetensors_index(f))
        self.is_mlx = any(k.startswith(("language_model.", "vision_tower.")) for k in stored)
        packed = any(t.dtype == "U32" for t in stored.values())  # an MLX-quantized text model too
        self.quantization: dict | None = self.config.get("quantization") if self.is_mlx or packed else None
        self._stored = stored
        self._names = {hf_name(k): k for k in stored
                       if not k.endswith((".scales", ".biases")) or self._is_plain(k)}

    def _is_plain(self, key: str) -> bool:
        """A `.biases`/`.scales` key that is a real tensor, not quantization metadata."""
        stem = key.rsplit(".", 1)[0]
        return stem + ".weight" not in self._stored or self._stored[stem + ".weight"].dtype != "U32"

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def text_config(self) -> dict:
        """Text hyperparameters (flat on the hub; nested in `text_config` in newer layouts)."""
        return {**self.config, **(self.config.get("text_config") or {})}

    @property
    def vision_config(self) -> dict:
        return dict(self.config.get("vision_config") or {})

    def shape(self, name: str) -> tuple[int, ...]:
        key = self._names[name]
        t = self._stored[key]
        if t.dtype == "U32" and self.quantization:
            bits = self._bits(key)
            return (*t.shape[:-1], t.shape[-1] * 32 // bits)
        if self.is_mlx and name.endswith("patch_embed.proj.weight") and len(t.shape) == 5:
            o, tt, h, w, i = t.shape
            return (o, i, tt, h, w)
        return t.shape

    def stored_dtypes(self) -> dict[str, str]:
        """Each tensor's dtype on disk (`U32` for an MLX-quantized weight)."""
        return {name: self._stored[key].dtype for name, key in self._names.items()}

    def nbytes_on_disk(self) -> int:
        return sum(t.nbytes for t in self._stored.values())

    def _bits(self, key: str) -> int:
        q = self.quantization or {}
        per_layer = q.get(key.rsplit(".", 1)[0])
        return int((per_layer or q).get("bits", 4))

    def load(self, name: str) -> np.ndarray:
        """One tensor as float32 numpy, in the Hugging Face layout."""
        key = self._names[name]
        t = self._stored[key]
        if t.dtype == "U32" and self.quantization:
            return self._dequantize(key)
        data = load_stored(t)
        if self.is_mlx and name.endswith("patch_embed.proj.weight") and data.ndim == 5:
            data = np.ascontiguousarray(data.transpose(0, 4, 1, 2, 3))
        return data.astype(np.float32, copy=False)

    def _dequantize(self, key: str) -> np.ndarray:
        import mlx.core as mx

        stem = key.rsplit(".", 1)[0]
        q = self.quantization or {}
        per_layer = q.get(stem) or q
        w = mx.array(load_stored(self._stored[key]))
        scales = mx.array(load_stored(self._stored[stem + ".scales"]))
        biases = mx.array(load_stored(self._stored[stem + ".biases"]))
        out = mx.dequantize(w, scales, biases, group_size=int(per_layer.get("group_size", 64)),
                            bits=int(per_layer.get("bits", 4)))
        return np.array(out.astype(mx.float32))
