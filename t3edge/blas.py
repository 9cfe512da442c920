"""A fast BLAS for MLX on a Linux CPU.

The `mlx[cpu]` wheel bundles the reference (netlib) BLAS: float32 matmul runs at a few GFLOPS,
40-60x below OpenBLAS on the same cores, and LoRA training crawls. A system OpenBLAS exports the
same BLAS symbols, so preloading it (`LD_PRELOAD`) makes MLX's matmuls use it. That has to happen
before the process loads MLX, so a command that trains, or runs an MLX model, re-executes itself
once with the preload set (`relaunch_with_fast_blas`, `fast_blas_for`).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

MARKER = "T3EDGE_BLAS_CHECKED"  # set in the relaunched process, so it never relaunches again
INSTALL_HINT = "apt-get install libopenblas0-pthread (Debian/Ubuntu) or dnf install openblas (Fedora)"


def bundled_blas() -> Path | None:
    """MLX's own vendored BLAS (the slow one), if this MLX is the Linux CPU wheel."""
    try:
        dist = metadata.distribution("mlx-cpu")
    except metadata.PackageNotFoundError:
        return None
    libs = Path(str(dist.locate_file("mlx_cpu.libs")))
    found = sorted(libs.glob("libblas-*.so*")) if libs.is_dir() else []
    return found[0] if found else None


def system_blas() -> Path | None:
    """A system OpenBLAS that exports the BLAS interface, or None."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    roots = [Path("/usr/lib") / multiarch, Path("/usr/lib64"), Path("/usr/lib")]
    names = ["openblas-pthread/libblas.so.3", "openblas-openmp/libblas.so.3", "libopenblas.so.0",
             "libopenblasp.so.0"]
    for root in roots:
        for name in names:
            if (root / name).is_file():
                return root / name
    return None


def preloaded() -> bool:
    return "blas" in os.environ.get("LD_PRELOAD", "").lower()


def status() -> str:
    """One line saying which BLAS MLX uses here."""
    if not sys.platform.startswith("linux") or bundled_blas() is None:
        return "MLX uses its platform BLAS"
    if preloaded():
        return f"MLX uses the preloaded BLAS ({os.environ['LD_PRELOAD']})"
    found = system_blas()
    if found is not None:
        return f"MLX uses its bundled reference BLAS; a fast one is at {found}"
    return f"MLX uses its bundled reference BLAS (about 50x slower for training): {INSTALL_HINT}"


def running_as_command() -> bool:
    """Whether this process is the `t3edge` command itself (not, say, a test calling into it)."""
    import t3edge

    main = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    return main is not None and (main.name == "t3edge" or main == Path(t3edge.__file__).parent / "__main__.py")


def relaunch_with_fast_blas() -> str | None:
    """Re-execute this command with a system OpenBLAS preloaded, when MLX would otherwise use its
    slow bundled BLAS and a fast one exists. Returns (only when it does not re-execute) None, or a
    one-line note saying how to get a fast BLAS. Only the `t3edge` command itself re-executes."""
    if (MARKER in os.environ or not sys.platform.startswith("linux") or bundled_blas() is None or preloaded()
            or not running_as_command()):
        return None
    fast = system_blas()
    if fast is None:
        return f"note: MLX will train with its slow bundled BLAS; for about 50x faster training: {INSTALL_HINT}"
    env = dict(os.environ)
    env[MARKER] = "1"
    env["LD_PRELOAD"] = " ".join(p for p in (str(fast), env.get("LD_PRELOAD", "")) if p)
    args = [sys.executable, "-m", "t3edge", *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(args[0], args, env)
    return None  # not reached


def fast_blas_for(model: str, backend: str | None = None) -> None:
    """Before loading `model`: re-execute with a fast BLAS if it is an MLX model (see above)."""
    from t3edge.models import load_models_config, resolve_model

    if sys.platform.startswith("linux") and resolve_model(model, load_models_config(), backend).kind == "mlx":  # type: ignore[arg-type]
        relaunch_with_fast_blas()
