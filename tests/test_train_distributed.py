"""Data-parallel training: 2 processes under `mlx.launch` equal 1 process on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from test_train_loop import write_data


def write_config(path: Path, model: Path, data: Path, out: Path) -> Path:
    path.write_text(
        f'model = "{model}"\ndata = ["{data}"]\nout = "{out}"\n'
        'iters = 3\nbatch_size = 2\ngrad_accum = 2\nlearning_rate = 2e-3\nschedule = "constant"\n'
        "steps_per_eval = 3\nvalid_fraction = 0.25\n[lora]\nrank = 8\nalpha = 16.0\ndropout = 0.0\n"
    )
    return path


@pytest.mark.slow
def test_two_processes_match_one(tiny_qwen2_vl: Path, test_image: Path, tmp_path: Path) -> None:
    import mlx.core as mx

    scripts = Path(sysconfig.get_path("scripts"))
    launcher, cli = scripts / "mlx.launch", scripts / "t3edge"
    assert launcher.is_file() and cli.is_file()
    data = write_data(tmp_path / "data.jsonl", 10, test_image)
    env = os.environ.copy()

    one = write_config(tmp_path / "one.toml", tiny_qwen2_vl, data, tmp_path / "one")
    done = subprocess.run([sys.executable, str(cli), "train", "--config", str(one), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    two = write_config(tmp_path / "two.toml", tiny_qwen2_vl, data, tmp_path / "two")
    done = subprocess.run([sys.executable, str(launcher), "-n", "2", "--backend", "ring",
                           sys.executable, str(cli), "train", "--config", str(two), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("adapter:") == 1  # only rank 0 reports and writes

    a = mx.load(str(tmp_path / "one" / "adapter" / "adapters.safetensors"))
    b = mx.load(str(tmp_path / "two" / "adapter" / "adapters.safetensors"))
    assert a.keys() == b.keys()
    assert any(float(mx.abs(v).max()) > 0 for k, v in a.items() if k.endswith("lora_b"))
    for k in a:
        np.testing.assert_allclose(np.array(a[k]), np.array(b[k]), atol=2e-5, err_msg=k)
    m1 = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["tokens"] for r in m1] == [r["tokens"] for r in m2]
    np.testing.assert_allclose([r["loss"] for r in m1], [r["loss"] for r in m2], rtol=1e-5)
    np.testing.assert_allclose(m1[-1]["val_loss"], m2[-1]["val_loss"], rtol=1e-5)


def test_batch_must_split_evenly() -> None:
    from t3edge.train.distributed import World

    world = World(rank=1, size=2)
    assert world.shard([1, 2, 3, 4]) == [3, 4]
    assert World(rank=0, size=1).all_sum({"x": 1}) == {"x": 1}
