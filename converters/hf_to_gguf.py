"""Hugging Face (or MLX) folder -> text-model GGUF + mmproj GGUF, without torch.

Both files are validated by `t3edge.gguf_check` after writing, so a converter bug shows up here
and not as an abort inside llama.cpp.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from converters.gguf_mmproj import plan_vision_tensors, write_mmproj_gguf
from converters.gguf_text import plan_text_tensors, write_text_gguf
from converters.gguf_write import OUT_TYPES, OutType, Planned
from converters.source import ModelSource
from t3edge.errors import BadInput
from t3edge.gguf_check import check_gguf


@dataclass
class GGUFPair:
    model: Path
    mmproj: Path


def convert_to_gguf(src_dir: str | Path, out_dir: str | Path, outtype: OutType = "f16", *,
                    name: str | None = None,
                    on_tensor: Callable[[Planned], None] | None = None) -> GGUFPair:
    """Write `<name>-<outtype>.gguf` and `mmproj-<name>-<outtype>.gguf` into `out_dir`."""
    if outtype not in OUT_TYPES:
        raise BadInput(f"unknown output type {outtype!r}", hint=f"choose one of {', '.join(OUT_TYPES)}")
    src = ModelSource(src_dir)
    name = name or Path(src_dir).resolve().name
    out = Path(out_dir)
    model = write_text_gguf(src, out / f"{name}-{outtype}.gguf", outtype, name=name, on_tensor=on_tensor)
    mmproj = write_mmproj_gguf(src, out / f"mmproj-{name}-{outtype}.gguf", outtype, name=name,
                               on_tensor=on_tensor)
    check_gguf(model, expect_kind="model")
    check_gguf(mmproj, expect_kind="mmproj")
    return GGUFPair(model, mmproj)


def planned_tensor_count(src_dir: str | Path, outtype: OutType = "f16") -> int:
    """How many tensors a conversion writes (for a progress bar)."""
    src = ModelSource(src_dir)
    return len(plan_text_tensors(src, outtype)) + len(plan_vision_tensors(src, outtype))
