"""HF -> GGUF conversion speed and memory on a generated random Qwen2-VL of a few hundred MB.

Each conversion runs in a fresh child process, so its wall time includes imports and its peak
RSS is its own. Baseline measured in the same run: copying the same safetensors file (pure I/O).
The ratio against llama.cpp's own `convert_hf_to_gguf.py` is printed only where torch and that
script are available (`--llama-cpp-script PATH`); it was measured at ~5 s / ~350 MB peak for a
286 MB model there, of which ~3.5 s / ~300 MB are importing torch and transformers.

    python bench/convert_gguf.py [--hidden 1024] [--layers 8] [--outtype f16]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# VmHWM (Linux) is this process's own peak; ru_maxrss would include the parent's RSS at fork.
PEAK = """
import pathlib, resource
status = pathlib.Path("/proc/self/status")
hwm = [l for l in status.read_text().splitlines() if l.startswith("VmHWM")] if status.exists() else []
print(int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
CHILD = f"""
import sys
from converters.hf_to_gguf import convert_to_gguf
convert_to_gguf(sys.argv[1], sys.argv[2], sys.argv[3])
{PEAK}
"""
IMPORTS_ONLY = f"import converters.hf_to_gguf, gguf, numpy\n{PEAK}"


def run_child(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of a child python process that prints its own peak last."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    wall = time.perf_counter() - t0
    return wall, int(out.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--outtype", default="f16", choices=["f32", "f16", "bf16", "q8_0"])
    parser.add_argument("--llama-cpp-script", type=Path, default=None,
                        help="llama.cpp's convert_hf_to_gguf.py, for a ratio (needs torch)")
    args = parser.parse_args()

    from tinymodels import build_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="bench-gguf-"))
    try:
        src = build_tiny_model(tmp / "model", "qwen2_vl", hidden_size=args.hidden, layers=args.layers,
                               heads=args.hidden // 64, kv_heads=max(1, args.hidden // 256),
                               vision_dim=512, vision_depth=4)
        weights = src / "model.safetensors"
        size_mb = weights.stat().st_size / 1e6
        largest = args.hidden * args.hidden * 2 * 4 / 1e6
        print(f"model: {size_mb:.0f} MB of f32 safetensors (largest tensor ~{largest:.0f} MB), "
              f"output {args.outtype}")

        t0 = time.perf_counter()
        shutil.copyfile(weights, tmp / "copy.safetensors")
        copy_s = time.perf_counter() - t0
        (tmp / "copy.safetensors").unlink()

        imports_s, imports_mb = run_child(["-c", IMPORTS_ONLY])
        conv_s, conv_mb = run_child(["-c", CHILD, str(src), str(tmp / "out"), args.outtype])
        out_mb = sum(p.stat().st_size for p in (tmp / "out").glob("*.gguf")) / 1e6
        print(f"baseline file copy          {copy_s:7.2f} s  {size_mb / copy_s:8.0f} MB/s")
        print(f"python + imports only       {imports_s:7.2f} s  peak RSS {imports_mb:6.0f} MB")
        print(f"t3edge convert gguf         {conv_s:7.2f} s  {size_mb / conv_s:8.0f} MB/s  "
              f"peak RSS {conv_mb:6.0f} MB  (wrote {out_mb:.0f} MB)")
        print(f"ratio conversion / copy     {conv_s / copy_s:7.1f}x")
        print(f"peak RSS above imports      {conv_mb - imports_mb:7.0f} MB "
              f"(model is {size_mb:.0f} MB: memory stays near one tensor, not the model)")
        _llama_cpp_ratio(args.llama_cpp_script, src, tmp, args.outtype, conv_s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _llama_cpp_ratio(script: Path | None, src: Path, tmp: Path, outtype: str, ours: float) -> None:
    if importlib.util.find_spec("torch") is None:
        print("llama.cpp convert_hf_to_gguf.py: not measured (torch is not installed here)")
        return
    if script is None or not script.is_file():
        print("llama.cpp convert_hf_to_gguf.py: not measured (pass --llama-cpp-script PATH)")
        return
    code = (f"import runpy, sys; sys.argv = {[str(script), str(src), '--outtype', outtype, '--outfile', str(tmp / 'ref.gguf')]!r}\n"
            f"runpy.run_path(sys.argv[0], run_name='__main__')\n{PEAK}")
    wall, peak = run_child(["-c", code])
    print(f"llama.cpp convert_hf_to_gguf {wall:6.2f} s  peak RSS {peak:6.0f} MB  (text model only)")
    print(f"ratio ours / llama.cpp      {ours / wall:7.2f}x")


if __name__ == "__main__":
    main()
