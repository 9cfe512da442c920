"""Layered configs, the model registry and model resolution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from t3edge.config import effective, load_config, user_config_dir
from t3edge.errors import ModelNotFound, T3Error
from t3edge.models import ModelsConfig, load_models_config, pull, resolve_model


def test_shipped_registry_has_the_promised_models() -> None:
    cfg = load_models_config()
    for name in ("qwen2-vl-2b", "qwen2.5-vl-3b", "qwen2.5-vl-7b", "smolvlm-500m"):
        entry = cfg.models[name]
        assert entry.mlx_repo and entry.gguf_repo and entry.gguf_file and entry.mmproj_file
        assert entry.context_length > 0 and entry.gguf_size_gb
    assert cfg.default_mlx in cfg.models and cfg.default_gguf in cfg.models


def test_layers_user_then_flags_and_sources() -> None:
    user = user_config_dir()
    user.mkdir(parents=True, exist_ok=True)
    (user / "models.toml").write_text("[generation]\nmax_tokens = 77\ntemperature = 0.5\n")
    try:
        cfg = load_models_config({"generation.temperature": 0.9, "generation.seed": None})
        assert cfg.generation.max_tokens == 77 and cfg.generation.temperature == 0.9
        rows = {k: (v, src) for k, v, src in effective("models", overrides={"generation.temperature": 0.9})}
        assert rows["generation.max_tokens"][0] == 77 and rows["generation.max_tokens"][1].startswith("user")
        assert rows["generation.temperature"] == (0.9, "command line")
        assert rows["backend.timeout_s"][1].startswith("default")
        assert rows["generation.seed"] == (None, "built-in")
    finally:
        (user / "models.toml").unlink()


def test_invalid_setting_names_key_and_origin(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[generation]\nmax_tokens = -3\n")
    with pytest.raises(T3Error, match=r"models\.generation\.max_tokens.*--config"):
        load_config("models", ModelsConfig, file=bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[generation\n")
    with pytest.raises(T3Error, match="invalid TOML"):
        load_config("models", ModelsConfig, file=broken)


def test_resolve_paths_urls_and_names(tmp_path: Path, tiny_qwen2_vl: Path) -> None:
    cfg = load_models_config()
    assert resolve_model(str(tiny_qwen2_vl), cfg).kind == "mlx"
    gguf_dir = tmp_path / "g"
    gguf_dir.mkdir()
    (gguf_dir / "model-f16.gguf").write_bytes(b"GGUF")
    (gguf_dir / "mmproj-model-f16.gguf").write_bytes(b"GGUF")
    r = resolve_model(str(gguf_dir), cfg)
    assert r.kind == "gguf" and r.path.endswith("model-f16.gguf") and r.mmproj.endswith("mmproj-model-f16.gguf")
    assert resolve_model(str(gguf_dir / "model-f16.gguf"), cfg).mmproj == r.mmproj
    u = resolve_model("http://127.0.0.1:8080/v1#qwen", cfg)
    assert (u.kind, u.url, u.remote_model) == ("openai", "http://127.0.0.1:8080/v1", "qwen")
    script = tmp_path / "s.txt"
    script.write_text("hi")
    assert resolve_model(f"replay:{script}", cfg).kind == "replay"


@pytest.mark.parametrize("spec, message", [
    ("no-such-model", "unknown model 'no-such-model'.*known models: .*qwen2-vl-2b.*smollm2-135m"),
    ("./missing/folder", "no such model path"),
    ("replay:/nope.jsonl", "replay file not found"),
    ("qwen2-vl-2b", "is not downloaded.*t3edge models pull qwen2-vl-2b"),
    ("openai:gpt-4o", "no OpenAI-compatible base URL"),
])
def test_resolution_errors(spec: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ModelNotFound, match=message):
        resolve_model(spec, load_models_config())


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="has no config.json"):
        resolve_model(str(tmp_path), load_models_config())


def test_pull_offline_is_one_clear_error() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(ModelNotFound, match=r"cannot download ggml-org/Qwen2-VL-2B-Instruct-GGUF.*cache folder"):
        pull("qwen2-vl-2b", load_models_config(), "gguf")


def test_ambiguous_or_mismatched_local_models_are_refused(tmp_path: Path, tiny_qwen2_vl: Path) -> None:
    cfg = load_models_config()
    for name in ("a-Q4_K_M.gguf", "b-Q8_0.gguf", "mmproj-a-f16.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    with pytest.raises(ModelNotFound, match="several GGUF models .*a-Q4_K_M.gguf, b-Q8_0.gguf"):
        resolve_model(str(tmp_path), cfg)
    assert resolve_model(str(tmp_path / "b-Q8_0.gguf"), cfg).mmproj.endswith("mmproj-a-f16.gguf")
    (tmp_path / "mmproj-b-f16.gguf").write_bytes(b"GGUF")
    assert resolve_model(str(tmp_path / "b-Q8_0.gguf"), cfg).mmproj.endswith("mmproj-b-f16.gguf")
    (tmp_path / "mmproj-other.gguf").write_bytes(b"GGUF")
    (tmp_path / "c.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelNotFound, match="several vision projectors"):
        resolve_model(str(tmp_path / "c.gguf"), cfg)
    with pytest.raises(ModelNotFound, match="GGUF file, which runs on llama.cpp"):
        resolve_model(str(tmp_path / "a-Q4_K_M.gguf"), cfg, "mlx")
    with pytest.raises(ModelNotFound, match="holds no .gguf file.*t3edge convert gguf"):
        resolve_model(str(tiny_qwen2_vl), cfg, "gguf")
