"""Hugging Face -> MLX through mlx-vlm's own converter (vision towers stay unquantized)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from converters.source import ModelSource
from t3edge.errors import BadInput, T3Error

DTYPES = ("float16", "bfloat16", "float32")


def convert_to_mlx(src: str | Path, out: str | Path, *, q_bits: int | None = None,
                   group_size: int = 64, dtype: str | None = None) -> Path:
    """Write an MLX folder; `q_bits` 4 or 8 quantizes the language model."""
    ModelSource(src)  # a clear error for a missing, truncated or unsupported checkpoint
    if q_bits not in (None, 4, 8):
        raise BadInput(f"--q-bits must be 4 or 8, got {q_bits}")
    if group_size not in (32, 64, 128):
        raise BadInput(f"--group-size must be 32, 64 or 128, got {group_size}")
    if dtype is not None and dtype not in DTYPES:
        raise BadInput(f"unknown dtype {dtype!r}", hint=f"choose one of {', '.join(DTYPES)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} exists and is not empty", hint="give a new folder")
    if out.exists():
        out.rmdir()  # mlx-vlm creates it
    from mlx_vlm.convert import convert

    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            convert(str(src), str(out), quantize=q_bits is not None, q_bits=q_bits or 4,
                    q_group_size=group_size, dtype=dtype)
    except Exception as exc:  # mlx-vlm raises many types; keep its message
        raise T3Error(f"mlx-vlm could not convert {src}: {type(exc).__name__}: {exc}") from exc
    return out
