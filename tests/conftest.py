"""Shared fixtures: offline environment, tiny models built once per session, test images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["ci_guard"]  # under CI=true a missing dependency fails instead of skipping

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep user config and data folders out of the real home directory."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("T3EDGE_CONFIG_DIR", str(base / "user-config"))
    monkeypatch.setenv("T3EDGE_DATA_DIR", str(base / "user-data"))


@pytest.fixture(scope="session")
def tiny_qwen2_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tinymodels import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2_vl", "qwen2_vl")


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tinymodels import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2_5_vl", "qwen2_5_vl")


@pytest.fixture(params=["qwen2_vl", "qwen2_5_vl"])
def tiny_model(request: pytest.FixtureRequest) -> Path:
    """Each tiny architecture in turn."""
    return request.getfixturevalue(f"tiny_{request.param.replace('.', '_')}")


@pytest.fixture(scope="session")
def test_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 224x224 PNG: 64 merged image tokens."""
    from tinymodels import make_test_image

    return make_test_image(tmp_path_factory.mktemp("img") / "photo.png", (224, 224))


def _wheel_model(name: str) -> Path:
    """A real pretrained GGUF from the wheels the dev extra installs, joined once per machine."""
    from t3edge.models import load_models_config
    from t3edge import wheel_models

    source = load_models_config().models[name].wheels
    assert source is not None
    if any(wheel_models.installed_part(p) is None for p in source.parts):
        pytest.fail(f"{name}'s packages are not installed: run the README's install command")
    if len(source.parts) == 1:
        found = wheel_models.installed_part(source.parts[0])
        assert found is not None
        return found
    return wheel_models.pull(name, source, root=Path.home() / ".cache" / "t3edge-tests")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct, Q4_1 (arch llama, ChatML template, text-only)."""
    return _wheel_model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3_gguf() -> Path:
    """Gemma 3 270M base, Q4_K_M (arch gemma3, text-only)."""
    return _wheel_model("gemma3-270m")
