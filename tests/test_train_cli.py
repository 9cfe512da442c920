"""`t3edge train prepare | fuse | export` on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_train_loop import config, write_data

from t3edge.cli import cli


@pytest.fixture(scope="module")
def run(tiny_qwen2_vl: Path, test_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short run whose adapter is far from zero."""
    from t3edge.train.trainer import train

    tmp = tmp_path_factory.mktemp("cli")
    data = write_data(tmp / "data.jsonl", 4, test_image)
    adapter = train(config(tiny_qwen2_vl, data, tmp / "run", iters=4, learning_rate=5e-3,
                           lora={"rank": 4, "alpha": 8, "dropout": 0.0}), progress=False)
    return adapter.parent


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def logits(model_dir: Path, adapter: Path | None = None) -> np.ndarray:
    import mlx.core as mx
    from mlx_vlm import load

    model, _ = load(str(model_dir), adapter_path=str(adapter) if adapter else None)
    ids = mx.array(np.arange(3, 40, dtype=np.int32)[None])
    return np.array(model(ids).logits)


def test_prepare_prints_histogram_and_counts(tiny_qwen2_vl: Path, test_image: Path, tmp_path: Path) -> None:
    from test_train_data import make_traj

    from t3edge.jsonl import JsonlWriter

    data = tmp_path / "d.jsonl"
    with JsonlWriter(data) as w:
        for i in range(5):
            w.write(make_traj(f"t{i}", test_image if i % 2 else None, n_steps=1 + i))
    out = invoke("train", "prepare", str(data), "--model", str(tiny_qwen2_vl), "--max-length", "300")
    assert "token lengths" in out
    rows = {line.split("│")[0].strip(): line.split("│")[-1].strip() for line in out.splitlines() if "│" in line}
    kept = int(rows["samples kept"])
    assert kept + int(rows["dropped: longer than 300"]) == 5 and 0 < kept < 5
    assert int(rows["masked tokens"]) + int(rows["supervised tokens"]) == int(rows["tokens"])


def test_errors_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "none"), "--resume"])
    assert result.exit_code == 1
    assert "nothing to resume" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_fuse_mlx_and_hf_layouts_equal_base_plus_adapter(run: Path, tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    want = logits(tiny_qwen2_vl, run / "adapter")
    base = logits(tiny_qwen2_vl)
    assert np.abs(want - base).max() > 1e-3  # the adapter matters
    invoke("train", "fuse", str(run), "--out", str(tmp_path / "mlx"))
    assert not (tmp_path / "mlx" / "adapters.safetensors").exists()
    np.testing.assert_allclose(logits(tmp_path / "mlx"), want, atol=1e-4)
    invoke("train", "fuse", str(run), "--hf", "--out", str(tmp_path / "hf"))
    np.testing.assert_allclose(logits(tmp_path / "hf"), want, atol=1e-4)


@pytest.mark.slow
def test_export_peft_and_gguf(run: Path, tmp_path: Path) -> None:
    import gguf
    from safetensors.numpy import load_file

    invoke("train", "export", str(run), "--to", "peft", "--out", str(tmp_path / "peft"))
    cfg = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8.0
    mlx = load_file(str(run / "adapter" / "adapters.safetensors"))
    peft = load_file(str(tmp_path / "peft" / "adapter_model.safetensors"))
    a = mlx["language_model.model.layers.1.self_attn.v_proj.lora_a"]
    np.testing.assert_array_equal(peft["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"], a.T)
    assert len(peft) == len(mlx)

    invoke("train", "export", str(run), "--to", "gguf", "--out", str(tmp_path / "lora.gguf"))
    reader = gguf.GGUFReader(str(tmp_path / "lora.gguf"))
    names = {t.name for t in reader.tensors}
    assert len(names) == len(mlx)
    assert "blk.1.attn_v.weight.lora_a" in names
