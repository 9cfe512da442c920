"""HF -> GGUF (text + mmproj) without torch: metadata, tensor layout, output types, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from converters.hf_to_gguf import convert_to_gguf
from converters.source import ModelSource
from t3edge.errors import BadInput
from t3edge.gguf_check import check_gguf

gguf = pytest.importorskip("gguf")


def _tensor(path: Path, name: str) -> np.ndarray:
    reader = gguf.GGUFReader(str(path))
    t = next(t for t in reader.tensors if t.name == name)
    return gguf.quants.dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])


def test_writes_a_valid_text_and_mmproj_pair(tiny_model: Path, tmp_path: Path) -> None:
    pair = convert_to_gguf(tiny_model, tmp_path, "f32")
    cfg = json.loads((tiny_model / "config.json").read_text())
    text = check_gguf(pair.model, expect_kind="model")
    meta = text.metadata
    assert text.architecture == "qwen2vl"
    assert meta["qwen2vl.rope.dimension_sections"] == cfg["rope_scaling"]["mrope_section"] + [0]
    assert meta["qwen2vl.rope.freq_base"] == pytest.approx(cfg["rope_theta"])
    assert meta["qwen2vl.attention.layer_norm_rms_epsilon"] == pytest.approx(cfg["rms_norm_eps"])
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["tokenizer.ggml.eos_token_id"] == cfg["eos_token_id"]
    assert "<|im_start|>" in meta["tokenizer.chat_template"]
    assert len(text.tensors) == 3 + 12 * cfg["num_hidden_layers"]
    proj = check_gguf(pair.mmproj, expect_kind="mmproj")
    pre = json.loads((tiny_model / "preprocessor_config.json").read_text())
    assert proj.metadata["clip.vision.image_min_pixels"] == pre["min_pixels"]
    assert proj.metadata["clip.vision.image_max_pixels"] == pre["max_pixels"]
    names = {t.name for t in proj.tensors}
    assert {"v.patch_embd.weight", "v.patch_embd.weight.1", "mm.0.weight", "mm.2.bias",
            "v.post_ln.weight", "v.blk.0.attn_q.bias", "v.blk.2.attn_v.weight"} <= names
    if cfg["model_type"] == "qwen2_5_vl":
        assert proj.metadata["clip.projector_type"] == "qwen2.5vl_merger"
        assert proj.metadata["clip.use_silu"] is True
        assert proj.metadata["clip.vision.n_wa_pattern"] == cfg["vision_config"]["fullatt_block_indexes"][0] + 1
        assert "v.blk.0.ffn_gate.weight" in names
    else:
        assert proj.metadata["clip.projector_type"] == "qwen2vl_merger"
        assert "clip.use_silu" not in proj.metadata


def test_tensor_values_and_layout(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    pair = convert_to_gguf(tiny_qwen2_vl, tmp_path, "f32")
    src = ModelSource(tiny_qwen2_vl)
    qkv = src.load("visual.blocks.1.attn.qkv.weight")
    third = qkv.shape[0] // 3
    np.testing.assert_array_equal(_tensor(pair.mmproj, "v.blk.1.attn_k.weight"), qkv[third:2 * third])
    patch = src.load("visual.patch_embed.proj.weight")
    np.testing.assert_array_equal(_tensor(pair.mmproj, "v.patch_embd.weight.1"), patch[:, :, 1])
    np.testing.assert_array_equal(_tensor(pair.model, "blk.1.attn_q.bias"),
                                  src.load("model.layers.1.self_attn.q_proj.bias"))
    np.testing.assert_array_equal(_tensor(pair.model, "output_norm.weight"), src.load("model.norm.weight"))


@pytest.mark.parametrize("outtype,main_type,tol", [("f16", "F16", 1e-3), ("bf16", "BF16", 1e-2),
                                                    ("q8_0", "Q8_0", 2e-3)])
def test_output_types(tiny_qwen2_5_vl: Path, tmp_path: Path, outtype: str, main_type: str, tol: float) -> None:
    pair = convert_to_gguf(tiny_qwen2_5_vl, tmp_path, outtype)  # type: ignore[arg-type]
    info = check_gguf(pair.model)
    types = {t.name: t.type_name for t in info.tensors}
    assert types["blk.0.attn_q.weight"] == main_type
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.bias"] == "F32"
    proj_types = {t.name: t.type_name for t in check_gguf(pair.mmproj).tensors}
    assert proj_types["v.patch_embd.weight"] == ("F16" if outtype == "f16" else "F32")
    got = _tensor(pair.model, "blk.0.ffn_up.weight")
    want = ModelSource(tiny_qwen2_5_vl).load("model.layers.0.mlp.up_proj.weight")
    assert np.abs(got - want).max() < tol


def test_bf16_source_converts_without_torch(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from converters.fuse import to_bf16_bits, write_safetensors

    src = ModelSource(tiny_qwen2_vl)
    folder = tmp_path / "bf16"
    shutil.copytree(tiny_qwen2_vl, folder)
    (folder / "model.safetensors").unlink()
    write_safetensors(folder / "model.safetensors",
                      [(n, "BF16", src.shape(n), lambda n=n: to_bf16_bits(src.load(n))) for n in src.names])
    pair = convert_to_gguf(folder, tmp_path / "out", "f32")
    got = _tensor(pair.model, "blk.0.ffn_up.weight")
    assert np.abs(got - src.load("model.layers.0.mlp.up_proj.weight")).max() < 2e-3


def test_truncated_safetensors_is_rejected(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_qwen2_vl, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(BadInput, match="truncated"):
        convert_to_gguf(folder, tmp_path / "out", "f16")
    assert not list((tmp_path).glob("out/*.gguf"))


def test_unsupported_architecture_lists_the_supported_ones(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    folder = tmp_path / "llama"
    shutil.copytree(tiny_qwen2_vl, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "llama"
    (folder / "config.json").write_text(json.dumps(cfg))
    result = CliRunner().invoke(_cli(), ["convert", "gguf", str(folder), str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "unsupported architecture 'llama'" in result.output
    assert "qwen2_vl" in result.output and "qwen2_5_vl" in result.output


def test_cli_writes_both_files(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["convert", "gguf", str(tiny_qwen2_vl), str(tmp_path),
                                         "--outtype", "q8_0", "--name", "tiny"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny-q8_0.gguf").is_file() and (tmp_path / "mmproj-tiny-q8_0.gguf").is_file()


def _cli():  # noqa: ANN202
    from t3edge.cli import cli

    return cli


def test_tied_embeddings_have_no_output_tensor(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "tied"
    shutil.copytree(tiny_qwen2_vl, folder)
    weights = load_file(str(folder / "model.safetensors"))
    del weights["lm_head.weight"]
    save_file(weights, str(folder / "model.safetensors"))
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": True}))
    names = {t.name for t in check_gguf(convert_to_gguf(folder, tmp_path / "out", "f16").model).tensors}
    assert "output.weight" not in names and "token_embd.weight" in names
    (folder / "config.json").write_text(json.dumps(cfg))  # untied but no lm_head: refused
    with pytest.raises(BadInput, match="lm_head"):
        convert_to_gguf(folder, tmp_path / "out2", "f16")


def test_newer_transformers_layout_converts_like_the_hub_layout(tiny_qwen2_5_vl: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "nested"
    shutil.copytree(tiny_qwen2_5_vl, folder)
    weights = load_file(str(folder / "model.safetensors"))
    renamed = {("model.language_model." + k[len("model."):]) if k.startswith("model.") else
               ("model." + k) if k.startswith("visual.") else k: v for k, v in weights.items()}
    save_file(renamed, str(folder / "model.safetensors"))
    a = convert_to_gguf(tiny_qwen2_5_vl, tmp_path / "a", "f16", name="m")
    b = convert_to_gguf(folder, tmp_path / "b", "f16", name="m")
    for x, y in ((a.model, b.model), (a.mmproj, b.mmproj)):
        ix, iy = check_gguf(x), check_gguf(y)
        assert sorted((t.name, t.shape) for t in ix.tensors) == sorted((t.name, t.shape) for t in iy.tensors)
