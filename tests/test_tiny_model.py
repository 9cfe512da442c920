"""The tiny offline models built for tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from tinymodels import SPECIAL_TOKENS, build_tiny_model


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    c = build_tiny_model(tmp_path / "c", seed=4)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl"])
def test_layout_matches_the_hub(arch: str, tmp_path: Path) -> None:
    out = build_tiny_model(tmp_path / arch, arch)  # type: ignore[arg-type]
    config = json.loads((out / "config.json").read_text())
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert config["model_type"] == arch and config["vocab_size"] == tok.get_vocab_size()
    assert config["image_token_id"] == tok.token_to_id("<|image_pad|>")
    assert config["eos_token_id"] == tok.token_to_id("<|im_end|>")
    assert [tok.id_to_token(tok.get_vocab_size() - len(SPECIAL_TOKENS) + i) for i in range(3)] == SPECIAL_TOKENS[:3]
    weights = load_file(str(out / "model.safetensors"))
    assert weights["visual.patch_embed.proj.weight"].shape == (32, 3, 2, 14, 14)
    assert "lm_head.weight" in weights and "model.layers.1.self_attn.q_proj.bias" in weights
    assert abs(float(weights["model.norm.weight"].mean()) - 1.0) < 0.1
    assert float(weights["model.norm.weight"].std()) > 0.01  # random norms, not ones
    assert sum(v.nbytes for v in weights.values()) < 2_000_000
    assert config["rope_theta"] == 100.0 and sum(config["rope_scaling"]["mrope_section"]) == 8
