"""LoRA bridges: MLX (as mlx-vlm's trainer saves it) <-> PEFT round trip, GGUF LoRA, fuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from converters.lora import read_mlx, read_peft, write_mlx, write_peft
from t3edge.errors import BadInput

mx = pytest.importorskip("mlx.core")


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2_vl: Path) -> Path:
    """An adapter saved by mlx-vlm's own trainer code, with random nonzero lora_b."""
    from mlx_vlm import load
    from mlx_vlm.trainer.common.model import prepare_model_for_training
    from mlx_vlm.trainer.peft import save_adapter

    model, _ = load(str(tiny_qwen2_vl))
    prepare_model_for_training(model, lora_rank=4, lora_alpha=8.0, verbose=False,
                               target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])
    mx.random.seed(0)
    for _, module in model.named_modules():
        if hasattr(module, "lora_b"):
            module.lora_b = mx.random.normal(module.lora_b.shape) * 0.2
    folder = tmp_path_factory.mktemp("mlx-adapter")
    save_adapter(model, folder / "adapters.safetensors")
    return folder


def _arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def test_mlx_peft_mlx_round_trip_is_exact(trained_adapter: Path, tmp_path: Path) -> None:
    adapter = read_mlx(trained_adapter)
    assert adapter.rank == 4 and adapter.scale == pytest.approx(2.0)
    write_peft(adapter, tmp_path / "peft")
    peft_cfg = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert peft_cfg["r"] == 4 and peft_cfg["lora_alpha"] == pytest.approx(8.0)
    assert set(peft_cfg["target_modules"]) == {"q_proj", "v_proj", "o_proj", "down_proj"}
    peft = _arrays(tmp_path / "peft" / "adapter_model.safetensors")
    a = peft["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    b = peft["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    assert a.shape == (4, 64) and b.shape == (64, 4)
    write_mlx(read_peft(tmp_path / "peft"), tmp_path / "back")
    original, back = _arrays(trained_adapter / "adapters.safetensors"), _arrays(tmp_path / "back" / "adapters.safetensors")
    assert original.keys() == back.keys()
    for key in original:
        assert original[key].dtype == back[key].dtype
        assert np.array_equal(original[key], back[key])
    cfg0 = json.loads((trained_adapter / "adapter_config.json").read_text())["lora_parameters"]
    cfg1 = json.loads((tmp_path / "back" / "adapter_config.json").read_text())["lora_parameters"]
    assert (cfg0["rank"], cfg0["scale"], sorted(cfg0["keys"])) == (cfg1["rank"], cfg1["scale"], cfg1["keys"])


def test_peft_rslora_scale_and_newer_key_layout(trained_adapter: Path, tmp_path: Path) -> None:
    write_peft(read_mlx(trained_adapter), tmp_path / "peft")
    cfg_path = tmp_path / "peft" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["use_rslora"] = True
    cfg_path.write_text(json.dumps(cfg))
    weights = _arrays(tmp_path / "peft" / "adapter_model.safetensors")
    from safetensors.numpy import save_file

    save_file({k.replace("model.model.layers", "model.model.language_model.layers"): v for k, v in weights.items()},
              str(tmp_path / "peft" / "adapter_model.safetensors"))
    adapter = read_peft(tmp_path / "peft")
    assert adapter.scale == pytest.approx(8.0 / 2.0)  # alpha / sqrt(rank)
    assert "model.layers.0.self_attn.q_proj" in adapter.layers


def test_incomplete_adapter_is_rejected(trained_adapter: Path, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((trained_adapter / "adapter_config.json").read_text())
    weights = {k: v for k, v in _arrays(trained_adapter / "adapters.safetensors").items()
               if not k.endswith("layers.0.self_attn.q_proj.lora_b")}
    save_file(weights, str(broken / "adapters.safetensors"))
    with pytest.raises(BadInput, match="lacks its B matrix"):
        read_mlx(broken)


def test_fused_model_equals_base_plus_adapter(trained_adapter: Path, tiny_qwen2_vl: Path, tmp_path: Path,
                                              test_image: Path) -> None:
    from mlx_vlm import load
    from mlx_vlm.utils import prepare_inputs
    from PIL import Image

    from t3edge.cli import cli

    result = CliRunner().invoke(cli, ["convert", "fuse", str(tiny_qwen2_vl), str(trained_adapter),
                                      str(tmp_path / "fused")])
    assert result.exit_code == 0, result.output

    def logits(model_dir: Path, adapter: Path | None) -> np.ndarray:
        model, processor = load(str(model_dir), adapter_path=str(adapter) if adapter else None)
        prompt = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is this?"
                  "<|im_end|>\n<|im_start|>assistant\n")
        inputs = prepare_inputs(processor, images=[Image.open(test_image).convert("RGB")], prompts=[prompt])
        out = model(inputs["input_ids"], pixel_values=inputs["pixel_values"], mask=None,
                    image_grid_thw=inputs["image_grid_thw"])
        return np.array(out.logits[0].astype(mx.float32))

    with_adapter = logits(tiny_qwen2_vl, trained_adapter)
    fused = logits(tmp_path / "fused", None)
    base = logits(tiny_qwen2_vl, None)
    assert np.abs(fused - with_adapter).max() < 1e-4
    assert np.abs(fused - base).max() > 1e-2  # the adapter matters


def test_fuse_rejects_an_adapter_for_another_model(trained_adapter: Path, tmp_path: Path) -> None:
    from converters.fuse import fuse
    from tinymodels import build_tiny_model

    other = build_tiny_model(tmp_path / "wide", "qwen2_vl", hidden_size=96, heads=6)
    with pytest.raises(BadInput, match="different base model"):
        fuse(other, trained_adapter, tmp_path / "out")


def test_lora_cli_chain_to_gguf(trained_adapter: Path, tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from t3edge.cli import cli
    from t3edge.gguf_check import check_gguf

    runner = CliRunner()
    assert runner.invoke(cli, ["convert", "lora", "to-peft", str(trained_adapter), str(tmp_path / "peft")]).exit_code == 0
    assert runner.invoke(cli, ["convert", "lora", "to-mlx", str(tmp_path / "peft"), str(tmp_path / "mlx")]).exit_code == 0
    out = runner.invoke(cli, ["convert", "lora", "to-gguf", str(tmp_path / "peft"), str(tmp_path / "a.gguf"),
                              "--base", str(tiny_qwen2_vl)])
    assert out.exit_code == 0, out.output
    info = check_gguf(tmp_path / "a.gguf", expect_kind="adapter")
    assert info.metadata["adapter.lora.alpha"] == pytest.approx(8.0)
    assert {"blk.0.attn_q.weight.lora_a", "blk.1.ffn_down.weight.lora_b"} <= {t.name for t in info.tensors}
