"""HF -> MLX (4- and 8-bit) through mlx-vlm, MLX folders as GGUF sources, and llama.cpp's
quantizer (q4_k_m, q5_k_m, q8_0) run in a child process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from converters.hf_to_gguf import convert_to_gguf
from converters.source import ModelSource
from t3edge.gguf_check import check_gguf

pytest.importorskip("mlx_vlm")


@pytest.mark.slow
@pytest.mark.parametrize("bits", [4, 8])
def test_hf_to_mlx_quantized_loads_and_generates(tiny_qwen2_vl: Path, tmp_path: Path, test_image: Path,
                                                  bits: int) -> None:
    from mlx_vlm import generate, load

    from t3edge.cli import cli

    out = tmp_path / f"mlx-{bits}"
    result = CliRunner().invoke(cli, ["convert", "mlx", str(tiny_qwen2_vl), str(out), "--q-bits", str(bits)])
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quantization"]["bits"] == bits
    model, processor = load(str(out))
    prompt = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n"
              "<|im_start|>assistant\n")
    res = generate(model, processor, prompt, image=[str(test_image)], max_tokens=4, verbose=False)
    assert res.prompt_tokens > 64
    assert res.generation_tokens >= 1


def test_mlx_folders_convert_to_the_same_gguf(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from converters.mlx import convert_to_mlx

    mlx_dir = convert_to_mlx(tiny_qwen2_vl, tmp_path / "mlx")
    src = ModelSource(mlx_dir)
    assert src.is_mlx
    assert src.shape("visual.patch_embed.proj.weight") == ModelSource(tiny_qwen2_vl).shape("visual.patch_embed.proj.weight")
    from_hf = convert_to_gguf(tiny_qwen2_vl, tmp_path / "a", "f32", name="m")
    from_mlx = convert_to_gguf(mlx_dir, tmp_path / "b", "f32", name="m")
    for a, b in ((from_hf.model, from_mlx.model), (from_hf.mmproj, from_mlx.mmproj)):
        ia, ib = check_gguf(a), check_gguf(b)
        assert sorted((t.name, t.shape) for t in ia.tensors) == sorted((t.name, t.shape) for t in ib.tensors)
        assert a.read_bytes()[ia.data_offset:] == b.read_bytes()[ib.data_offset:]


@pytest.mark.slow
def test_quantized_mlx_folder_converts_dequantized(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from converters.mlx import convert_to_mlx

    mlx_dir = convert_to_mlx(tiny_qwen2_vl, tmp_path / "mlx8", q_bits=8)
    src, ref = ModelSource(mlx_dir), ModelSource(tiny_qwen2_vl)
    name = "model.layers.0.mlp.up_proj.weight"
    assert src.shape(name) == ref.shape(name)
    assert np.abs(src.load(name) - ref.load(name)).max() < 0.02
    pair = convert_to_gguf(mlx_dir, tmp_path / "gguf", "f16")
    assert check_gguf(pair.model).tensors


@pytest.mark.slow
def test_llama_quantizer_types(tiny_qwen2_vl: Path, tmp_path: Path, test_image: Path) -> None:
    pytest.importorskip("llama_cpp")
    from converters.quantize import quantize_gguf
    from t3edge.backends.base import GenerationConfig, ImagePart, Message, TextPart
    from t3edge.backends.llama import LlamaBackend
    from t3edge.models import BackendSettings, ResolvedModel

    pair = convert_to_gguf(tiny_qwen2_vl, tmp_path, "f32", name="m")
    expected = {"q8_0": "Q8_0", "q4_k_m": "Q5_0", "q5_k_m": "Q5_1"}  # 64-wide rows: k-quants fall back
    for qtype, main in expected.items():
        out = quantize_gguf(pair.model, tmp_path / f"m-{qtype}.gguf", qtype, threads=2)
        types = {t.name: t.type_name for t in check_gguf(out).tensors}
        assert types["blk.0.attn_q.weight"] in (main, "Q8_0") and types["blk.0.attn_norm.weight"] == "F32"
        assert out.stat().st_size < pair.model.stat().st_size
    backend = LlamaBackend(ResolvedModel(spec="q", kind="gguf", path=str(tmp_path / "m-q4_k_m.gguf"),
                                         mmproj=str(pair.mmproj)), BackendSettings(n_threads=2))
    try:
        c = backend.generate([Message("user", [ImagePart(str(test_image)), TextPart("Hi")])],
                             GenerationConfig(max_tokens=4))
        assert c.usage.prompt_tokens > 64
    finally:
        backend.close()


def test_quantizer_refuses_a_broken_input_without_dying(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from converters.quantize import quantize_gguf
    from t3edge.errors import BadInput

    pair = convert_to_gguf(tiny_qwen2_vl, tmp_path, "f32", name="m")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(pair.model.read_bytes()[:-500])
    with pytest.raises(BadInput, match="truncated"):
        quantize_gguf(broken, tmp_path / "out.gguf", "q8_0")
    with pytest.raises(BadInput, match="expected a model"):
        quantize_gguf(pair.mmproj, tmp_path / "out.gguf", "q8_0")
