"""A run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_train_loop import ALL_LINEAR, write_data


def write_config(path: Path, model: Path, data: Path, out: Path) -> Path:
    path.write_text(
        f'model = "{model}"\ndata = ["{data}"]\nout = "{out}"\n'
        "iters = 20\nlearning_rate = 2e-3\nwarmup_steps = 3\nschedule = \"cosine\"\n"
        "min_learning_rate = 1e-4\nsteps_per_save = 4\nsteps_per_eval = 10\nvalid_fraction = 0.2\n"
        "keep_checkpoints = 2\nseed = 7\n"
        f"[lora]\nrank = 8\nalpha = 16.0\ndropout = 0.1\ntarget_modules = {json.dumps(ALL_LINEAR)}\n"
    )
    return path


def t3edge(*args: str) -> list[str]:
    return [sys.executable, "-c", "from t3edge.cli import main; main()", *args]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_qwen2_vl: Path, test_image: Path,
                                                          tmp_path: Path) -> None:
    import mlx.core as mx

    from t3edge.config import load_config
    from t3edge.train.config import TrainConfig
    from t3edge.train.trainer import train

    data = write_data(tmp_path / "data.jsonl", 8, test_image)
    ref_cfg = load_config("train", TrainConfig,
                          file=write_config(tmp_path / "ref.toml", tiny_qwen2_vl, data, tmp_path / "ref"))
    ref = train(ref_cfg, progress=False)

    cfg = write_config(tmp_path / "run.toml", tiny_qwen2_vl, data, tmp_path / "run")
    run = tmp_path / "run"
    proc = subprocess.Popen(t3edge("train", "--config", str(cfg), "--no-progress"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "step-0000008" / "state.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "adapter").exists()  # it really died mid-way

    done = subprocess.run(t3edge("train", "--config", str(cfg), "--resume", "--no-progress"),
                          capture_output=True, text=True, env=os.environ.copy(), timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    a = mx.load(str(ref / "adapters.safetensors"))
    b = mx.load(str(run / "adapter" / "adapters.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(np.array(a[k]), np.array(b[k]), atol=1e-5, err_msg=k)

    # The loss curve continues as if never interrupted: each step once, the same values.
    def curve(folder: Path) -> list[dict]:
        return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]

    ref_curve, run_curve = curve(tmp_path / "ref"), curve(run)
    assert [r["step"] for r in run_curve] == list(range(1, 21))
    np.testing.assert_allclose([r["loss"] for r in run_curve], [r["loss"] for r in ref_curve], rtol=1e-4)
    np.testing.assert_allclose([r["learning_rate"] for r in run_curve],
                               [r["learning_rate"] for r in ref_curve], rtol=1e-6)
    assert [r.get("val_loss") is not None for r in run_curve] == [s % 10 == 0 for s in range(1, 21)]


def test_resume_refuses_changed_data(tiny_qwen2_vl: Path, test_image: Path, tmp_path: Path) -> None:
    from t3edge.config import load_config
    from t3edge.errors import T3Error
    from t3edge.train.config import TrainConfig
    from t3edge.train.trainer import train

    data = write_data(tmp_path / "data.jsonl", 4, None)
    cfg = load_config("train", TrainConfig, file=write_config(tmp_path / "c.toml", tiny_qwen2_vl, data,
                                                              tmp_path / "run"),
                      overrides={"iters": 5, "steps_per_eval": None, "valid_fraction": 0.0})
    train(cfg, progress=False)
    write_data(data, 5, None)
    with pytest.raises(T3Error, match="training data changed"):
        train(cfg, resume=True, progress=False)
