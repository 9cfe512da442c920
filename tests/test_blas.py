"""The fast-BLAS relaunch of `t3edge train` on a Linux CPU: found, applied once, never inside a
process that only calls into the command (a test, a notebook)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from t3edge import blas


def test_a_process_that_is_not_the_command_never_reexecutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(blas.MARKER, raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert not blas.running_as_command()  # pytest's argv
    assert blas.relaunch_with_fast_blas() is None


@pytest.mark.skipif(not sys.platform.startswith("linux") or blas.bundled_blas() is None,
                    reason="MLX's bundled BLAS is the Linux mlx[cpu] wheel's")
def test_the_command_runs_with_the_fast_blas_preloaded() -> None:
    """`t3edge` re-executes itself once with the system OpenBLAS in LD_PRELOAD when there is one,
    or says in one line how to get one."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", blas.MARKER)}
    done = subprocess.run(["t3edge", "dev", "blas"], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    fast = blas.system_blas()
    if fast is None:
        assert "apt-get install libopenblas0-pthread" in done.stderr
    else:
        assert done.stdout.strip() == f"MLX uses the preloaded BLAS ({fast})"


def test_status_names_what_mlx_uses() -> None:
    assert "BLAS" in blas.status()
