"""Fuse a LoRA adapter into its base model and save the result in the Hugging Face layout.

W' = W + scale * B @ A for every target (the same math as mlx-vlm's `LoRALinear.fuse`), computed
tensor by tensor in float32 and stored back in the base's dtype. The base may be a Hugging Face
folder or an MLX one (a quantized MLX base is dequantized and written as bf16). The output feeds
`t3edge convert gguf` and `t3edge convert mlx` like any Hugging Face checkpoint.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from converters.lora import check_fits, new_folder, read_any
from converters.source import ModelSource
from t3edge.errors import BadInput

_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}
_COPY_SKIP = (".safetensors", ".safetensors.index.json")


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path: Path, entries: list[tuple[str, str, tuple[int, ...], Callable[[], np.ndarray]]],
                      metadata: dict[str, str] | None = None) -> None:
    """Stream tensors (name, dtype tag, shape, loader) into one safetensors file."""
    itemsize = {"F32": 4, "F16": 2, "BF16": 2, "U32": 4}
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, dtype, shape, _ in entries:
        n = int(np.prod(shape, dtype=np.int64)) * itemsize[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, dtype, shape, load in entries:
            data = load()
            if tuple(data.shape) != tuple(shape):
                raise ValueError(f"{name}: expected shape {shape}, got {data.shape}")
            f.write(memoryview(np.ascontiguousarray(data)).cast("B"))
    tmp.replace(path)


def fuse(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Write base + adapter, fused, as a Hugging Face folder in `out_dir`."""
    base = ModelSource(base_dir)
    adapter = read_any(adapter_dir)
    check_fits(adapter, base)
    out = Path(out_dir)
    if out.resolve() == base.folder.resolve():
        raise BadInput("the output folder is the base folder", hint="give a new folder")
    new_folder(out)  # never write over another model
    stored = base.stored_dtypes()
    entries = []
    for name in base.names:
        dtype = stored[name]
        tag = dtype if dtype in ("F32", "F16", "BF16") else "BF16"

        def load(name: str = name, tag: str = tag) -> np.ndarray:
            w = base.load(name)
            target = name.removesuffix(".weight")
            if name.endswith(".weight") and target in adapter.layers:
                w = w + adapter.delta(target)
            if tag == "BF16":
                return to_bf16_bits(w)
            return w.astype(np.float16 if tag == "F16" else np.float32)

        entries.append((name, tag, base.shape(name), load))
    write_safetensors(out / "model.safetensors", entries)
    for f in base.folder.iterdir():
        if f.is_file() and not f.name.endswith(_COPY_SKIP) and f.name not in ("config.json",):
            shutil.copy2(f, out / f.name)
    config = dict(base.config)
    config.pop("quantization", None)
    config.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out
