"""Write a GGUF file tensor by tensor: plan every tensor's name, shape and type first (from the
source's headers, without loading), write the header, then load, convert and append one tensor
at a time. Peak memory is about one tensor. The file appears under its name only when complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

OutType = Literal["f32", "f16", "bf16", "q8_0"]
OUT_TYPES: tuple[str, ...] = ("f32", "f16", "bf16", "q8_0")


def _qtypes() -> dict[str, object]:
    from gguf import GGMLQuantizationType as Q

    return {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}


def file_type(outtype: OutType) -> int:
    """The general.file_type value of an output type."""
    from gguf import LlamaFileType as F

    return int({"f32": F.ALL_F32, "f16": F.MOSTLY_F16, "bf16": F.MOSTLY_BF16,
                "q8_0": F.MOSTLY_Q8_0}[outtype])


@dataclass
class Planned:
    """One tensor to write: GGUF name, numpy (row-major) shape, storage type, and a loader."""

    name: str
    shape: tuple[int, ...]
    qtype: object  # gguf.GGMLQuantizationType
    load: Callable[[], np.ndarray]


def storage_type(name: str, shape: tuple[int, ...], outtype: OutType, *, float_only: bool = False) -> object:
    """The GGML type a tensor is stored as for `outtype`.

    1-D tensors and norms stay f32 (llama.cpp reads them as f32); `float_only` tensors (the
    patch-embedding convolutions) are f16 for an f16 file and f32 otherwise; q8_0 falls back
    to f16 for rows that are not a multiple of its block of 32.
    """
    q = _qtypes()
    if len(shape) <= 1 or name.endswith(("_norm.weight", "_ln.weight")):
        return q["f32"]
    if float_only:
        return q["f16"] if outtype == "f16" else q["f32"]
    if outtype == "q8_0" and shape[-1] % 32:
        return q["f16"]
    return q[outtype]


def _nbytes(shape: tuple[int, ...], qtype: object) -> int:
    from gguf.quants import quant_shape_to_byte_shape

    return int(np.prod(quant_shape_to_byte_shape(shape, qtype), dtype=np.int64))  # type: ignore[arg-type]


def _encode(data: np.ndarray, qtype: object) -> np.ndarray:
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quantize

    data = np.ascontiguousarray(data, dtype=np.float32)
    if qtype == Q.F32:
        return data
    if qtype == Q.F16:
        return data.astype(np.float16)
    return quantize(data, qtype)  # type: ignore[arg-type]


def write_gguf(path: Path, arch: str, set_metadata: Callable[[object], None],
               tensors: list[Planned], *, on_tensor: Callable[[Planned], None] | None = None) -> Path:
    """Write `tensors` with the metadata `set_metadata(writer)` adds; return the path."""
    from gguf import GGUFWriter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    writer = GGUFWriter(str(tmp), arch)
    try:
        set_metadata(writer)
        for t in tensors:
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), _nbytes(t.shape, t.qtype),
                                   raw_dtype=t.qtype)  # type: ignore[arg-type]
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in tensors:
            data = t.load()
            if tuple(data.shape) != tuple(t.shape):
                raise ValueError(f"tensor {t.name}: planned shape {t.shape}, got {data.shape}")
            writer.write_tensor_data(_encode(data, t.qtype))
            if on_tensor is not None:
                on_tensor(t)
        writer.close()
        os.replace(tmp, path)
    finally:
        writer.close()
        if tmp.exists():
            tmp.unlink()
    return path


def total_bytes(tensors: Iterable[Planned]) -> int:
    return sum(_nbytes(t.shape, t.qtype) for t in tensors)
