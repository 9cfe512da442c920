"""Quantize a text-model GGUF with llama.cpp's own quantizer (`llama_model_quantize`).

The quantizer runs in a child process, so a file that makes llama.cpp abort cannot take the
caller down with it; the input is validated before and the output after.
The vision projector is not quantized here: keep the f16/f32 mmproj beside the result.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from t3edge.errors import BadInput, T3Error
from t3edge.gguf_check import check_gguf

# name -> llama_cpp's llama_ftype constant
QUANT_TYPES: dict[str, str] = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
                               "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M"}


def quantize_gguf(src: str | Path, dst: str | Path, qtype: str, *, threads: int | None = None) -> Path:
    """Write `dst`, the `qtype` quantization of the model GGUF `src`."""
    if qtype not in QUANT_TYPES:
        raise BadInput(f"unknown quantization {qtype!r}", hint=f"choose one of {', '.join(QUANT_TYPES)}")
    info = check_gguf(src, expect_kind="model")
    dst = Path(dst)
    if dst.resolve() == info.path.resolve():
        raise BadInput("the output would overwrite the input", hint="give another output path")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".partial")
    cmd = [sys.executable, "-m", "converters.quantize", str(info.path), str(tmp),
           QUANT_TYPES[qtype], str(threads or os.cpu_count() or 1)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise T3Error(f"llama.cpp's quantizer failed on {src} ({how}): {' | '.join(detail)}",
                      hint="check the input with: t3edge convert inspect")
    os.replace(tmp, dst)
    check_gguf(dst, expect_kind="model")
    return dst


def _child(src: str, dst: str, ftype: str, threads: int) -> int:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype)
    params.nthread = threads
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params))


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
