"""Registry entries that name a PEFT adapter (the paper's tuned agent, `t3-agent-qwen2-vl-7b`),
fully offline: a local hub cache laid out as huggingface-hub lays it out holds a tiny Qwen2-VL as
the MLX build, its GGUF conversion as the GGUF build and a random PEFT LoRA as the adapter repo;
`t3edge models pull` (HF_HUB_OFFLINE=1) converts the adapter for each backend, resolution returns
base + adapter, and both backends load and generate with it."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from t3edge.backends.base import GenerationConfig, Message
from t3edge.errors import ModelNotFound

pytest.importorskip("gguf")

NAME = "tiny-agent"
MISSING = "tiny-agent-no-adapter"  # its adapter repo is not in the cache
MLX_REPO, GGUF_REPO, LORA_REPO = "t3test/Tiny-Qwen2-VL", "t3test/Tiny-Qwen2-VL-GGUF", "t3test/Tiny-Agent-Lora"
GREEDY = GenerationConfig(max_tokens=6, temperature=0.0)
USER_CONFIG = f"""
[generation]
max_tokens = 8

[models.{NAME}]
family = "qwen2_vl"
description = "a tiny random Qwen2-VL with a random LoRA"
params = "tiny"
context_length = 4096
mlx_repo = "{MLX_REPO}"
gguf_repo = "{GGUF_REPO}"
gguf_file = "tiny-*.gguf"
mmproj_file = "mmproj-*.gguf"
adapter_repo = "{LORA_REPO}"

[models.{MISSING}]
family = "qwen2_vl"
mlx_repo = "{MLX_REPO}"
gguf_repo = "{GGUF_REPO}"
gguf_file = "tiny-*.gguf"
mmproj_file = "mmproj-*.gguf"
adapter_repo = "t3test/Not-In-The-Cache"
"""


def cache_repo(cache: Path, repo: str, files: dict[str, Any]) -> str:
    """Put `files` (repo path -> local file) into `cache` as huggingface-hub does: content-named
    blobs, a snapshot folder of relative symlinks per commit, and refs/main naming the commit."""
    storage = cache / ("models--" + repo.replace("/", "--"))
    commit = hashlib.sha1(repo.encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    for rel, src in files.items():
        data = src.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    return commit


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2_vl: Path) -> dict[str, Any]:
    from converters.hf_to_gguf import convert_to_gguf
    from converters.lora import random_adapter, write_peft
    from converters.source import ModelSource

    root = tmp_path_factory.mktemp("registry-adapters")
    pair = convert_to_gguf(tiny_qwen2_vl, root / "gguf", "f32", name="tiny")
    lora = random_adapter(ModelSource(tiny_qwen2_vl), rank=4, scale=2.0, std=0.2, seed=1)
    peft = write_peft(lora, root / "peft", base_model="t3test/Tiny-Qwen2-VL-HF")
    cache = root / "hub"
    cache_repo(cache, MLX_REPO, {p.name: p for p in tiny_qwen2_vl.iterdir() if p.is_file()})
    cache_repo(cache, GGUF_REPO, {pair.model.name: pair.model, pair.mmproj.name: pair.mmproj})
    commit = cache_repo(cache, LORA_REPO, {p.name: p for p in peft.iterdir()})
    config = root / "config"
    config.mkdir()
    (config / "models.toml").write_text(USER_CONFIG)
    return {"root": root, "cache": cache, "config": config, "data": root / "data",
            "model": pair.model, "commit": commit}


def _use(mp: pytest.MonkeyPatch, world: dict[str, Any], data: Path) -> None:
    from huggingface_hub import constants

    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_HUB_CACHE", str(world["cache"]))
    mp.setattr(constants, "HF_HUB_CACHE", str(world["cache"]))
    mp.setattr(constants, "HF_HUB_OFFLINE", True)
    mp.setenv("T3EDGE_CONFIG_DIR", str(world["config"]))
    mp.setenv("T3EDGE_DATA_DIR", str(data))


@pytest.fixture(scope="module")
def pulled(world: dict[str, Any]) -> dict[str, str]:
    """`t3edge models pull NAME --backend mlx|gguf`, once for the module: each command's output."""
    from t3edge.cli import cli

    out = {}
    with pytest.MonkeyPatch.context() as mp:
        _use(mp, world, world["data"])
        for kind in ("mlx", "gguf"):
            result = CliRunner().invoke(cli, ["models", "pull", NAME, "--backend", kind])
            assert result.exit_code == 0, result.output
            out[kind] = result.output
    return out


@pytest.fixture(autouse=True)
def _env(_isolated_dirs: None, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, world, world["data"])


@pytest.fixture
def fresh_data(world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder where nothing has been converted (the hub cache still holds every download)."""
    monkeypatch.setenv("T3EDGE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_shipped_registry_names_the_papers_adapter() -> None:
    from t3edge.models import load_models_config

    entry = load_models_config().models["t3-agent-qwen2-vl-7b"]
    assert entry.adapter_repo == "PengxiangLi/MAT-Qwen2VL-7B-Lora"
    assert entry.mlx_repo == "mlx-community/Qwen2-VL-7B-Instruct-4bit"
    assert (entry.gguf_repo, entry.gguf_file, entry.mmproj_file) == (
        "ggml-org/Qwen2-VL-7B-Instruct-GGUF", "*Q4_K_M.gguf", "mmproj-*.gguf")


def test_pull_converts_the_adapter_once_per_backend(pulled: dict[str, str], world: dict[str, Any]) -> None:
    from t3edge.cli import cli
    from t3edge.gguf_check import check_gguf
    from t3edge.models import converted_source

    data = world["data"] / "adapters" / NAME
    assert "converted for mlx" in pulled["mlx"] and "converted for gguf" in pulled["gguf"]
    assert f"{NAME}: " in pulled["gguf"] and "vision projector: " in pulled["gguf"]
    assert {p.name for p in (data / "mlx").iterdir()} == {
        "adapters.safetensors", "adapter_config.json", "t3edge-source.json"}
    info = check_gguf(data / "gguf" / "adapter.gguf", expect_kind="adapter")
    assert info.metadata["adapter.lora.alpha"] == pytest.approx(8.0)
    source = converted_source(NAME, "gguf")
    assert source is not None and source.repo == LORA_REPO and source.commit == world["commit"]
    assert not list(data.glob(".*partial"))
    stamp = (data / "gguf" / "adapter.gguf").stat().st_mtime_ns
    again = CliRunner().invoke(cli, ["models", "pull", NAME, "--backend", "gguf"])
    assert again.exit_code == 0 and "already converted for gguf" in again.output, again.output
    assert (data / "gguf" / "adapter.gguf").stat().st_mtime_ns == stamp


def test_converted_mlx_adapter_equals_the_peft_one(pulled: dict[str, str], world: dict[str, Any]) -> None:
    import numpy as np

    from converters.lora import read_mlx, read_peft

    mlx, peft = read_mlx(world["data"] / "adapters" / NAME / "mlx"), read_peft(world["root"] / "peft")
    assert mlx.layers.keys() == peft.layers.keys() and mlx.scale == peft.scale
    for name, (a, b) in peft.layers.items():
        assert np.array_equal(mlx.layers[name][0], a) and np.array_equal(mlx.layers[name][1], b)


@pytest.mark.parametrize("kind", ["mlx", "gguf"])
def test_resolve_returns_the_base_and_the_converted_adapter(pulled: dict[str, str], world: dict[str, Any],
                                                            kind: str) -> None:
    from t3edge.models import load_models_config, resolve_model

    resolved = resolve_model(NAME, load_models_config(), kind)  # type: ignore[arg-type]
    adapters = world["data"] / "adapters" / NAME
    assert resolved.kind == kind
    if kind == "gguf":
        assert Path(resolved.path or "").name == "tiny-f32.gguf" and resolved.mmproj
        assert resolved.adapter == str(adapters / "gguf" / "adapter.gguf")
    else:
        assert (Path(resolved.path or "") / "config.json").is_file()
        assert resolved.adapter == str(adapters / "mlx")
    assert resolved.path and str(world["cache"]) in str(Path(resolved.path).parent)


def _say_hi() -> list[Message]:
    return [Message("user", "Say hi.")]


def test_llama_backend_runs_with_the_gguf_lora(pulled: dict[str, str], world: dict[str, Any]) -> None:
    pytest.importorskip("llama_cpp")
    from t3edge.loading import backend_for, load_backend
    from t3edge.models import load_models_config, resolve_model

    cfg = load_models_config({"backend.n_threads": 2})
    tuned = load_backend(NAME, backend="gguf", config=cfg)
    try:
        lora = world["data"] / "adapters" / NAME / "gguf" / "adapter.gguf"
        assert tuned.adapter == str(lora)  # type: ignore[attr-defined]
        with_lora = tuned.generate(_say_hi(), GREEDY)
    finally:
        tuned.close()
    base = backend_for(resolve_model(NAME, cfg, "gguf", with_adapter=False), cfg)
    try:
        assert base.adapter is None  # type: ignore[attr-defined]
        plain = base.generate(_say_hi(), GREEDY)
    finally:
        base.close()
    assert with_lora.usage.generated_tokens >= 1 and plain.usage.generated_tokens >= 1
    assert with_lora.token_ids != plain.token_ids  # the adapter changes what the model says


def test_mlx_backend_runs_with_the_mlx_adapter(pulled: dict[str, str], world: dict[str, Any]) -> None:
    pytest.importorskip("mlx_vlm")
    from t3edge.loading import backend_for, load_backend
    from t3edge.models import load_models_config, resolve_model

    tuned = load_backend(NAME, backend="mlx")
    try:
        assert tuned.adapter == str(world["data"] / "adapters" / NAME / "mlx")  # type: ignore[attr-defined]
        modules = tuned.model.named_modules()  # type: ignore[attr-defined]
        assert sum("lora" in type(m).__name__.lower() for _, m in modules) == 10  # 5 targets x 2 layers
        with_lora = tuned.generate(_say_hi(), GREEDY)
    finally:
        tuned.close()
    cfg = load_models_config()
    base = backend_for(resolve_model(NAME, cfg, "mlx", with_adapter=False), cfg)
    try:
        plain = base.generate(_say_hi(), GREEDY)
    finally:
        base.close()
    assert with_lora.usage.generated_tokens >= 1 and plain.usage.generated_tokens >= 1
    assert with_lora.token_ids != plain.token_ids  # the adapter's weights were loaded, not left at zero


def test_an_explicit_adapter_wins_even_when_none_is_converted(pulled: dict[str, str], world: dict[str, Any],
                                                              fresh_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from t3edge.loading import load_backend
    from t3edge.models import load_models_config

    mine = tmp_path / "mine.gguf"
    shutil.copy(world["data"] / "adapters" / NAME / "gguf" / "adapter.gguf", mine)
    cfg = load_models_config({"backend.n_threads": 2})
    engine = load_backend(NAME, backend="gguf", adapter=str(mine), config=cfg)
    try:
        assert engine.adapter == str(mine)  # type: ignore[attr-defined]
    finally:
        engine.close()


def test_generate_command_runs_the_tuned_model(pulled: dict[str, str]) -> None:
    pytest.importorskip("llama_cpp")
    from t3edge.cli import cli

    args = ["generate", "--model", NAME, "--backend", "gguf", "--max-tokens", "4", "hi"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "[llama] prompt" in result.output


def test_list_and_where_show_the_adapter(pulled: dict[str, str], world: dict[str, Any]) -> None:
    from t3edge.cli import cli

    runner = CliRunner()
    listed = runner.invoke(cli, ["models", "list"], env={"COLUMNS": "240"})
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if f" {NAME} " in line)
    assert row.count("local") == 2
    missing_row = next(line for line in listed.output.splitlines() if f" {MISSING} " in line)
    assert missing_row.count("base only") == 2
    assert f"  {NAME}: LoRA {LORA_REPO}" in listed.output
    assert "  t3-agent-qwen2-vl-7b: LoRA PengxiangLi/MAT-Qwen2VL-7B-Lora" in listed.output
    where = runner.invoke(cli, ["models", "where", NAME, "--backend", "gguf"])
    assert where.exit_code == 0, where.output
    assert where.output.splitlines()[-1] == str(world["data"] / "adapters" / NAME / "gguf" / "adapter.gguf")


def test_unconverted_adapter_names_the_pull_command(world: dict[str, Any], fresh_data: Path) -> None:
    from t3edge.cli import cli
    from t3edge.models import load_models_config, resolve_model

    expected = f"not converted for gguf yet.*t3edge models pull {NAME} --backend gguf"
    with pytest.raises(ModelNotFound, match=expected):
        resolve_model(NAME, load_models_config(), "gguf")
    result = CliRunner().invoke(cli, ["run", "What is 2 + 2?", "--model", NAME, "--backend", "mlx"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"run: t3edge models pull {NAME} --backend mlx" in errors[0], result.output


def test_offline_pull_of_an_uncached_adapter_fails_in_one_line(world: dict[str, Any],
                                                               fresh_data: Path) -> None:
    from t3edge.cli import cli

    result = CliRunner().invoke(cli, ["models", "pull", MISSING, "--backend", "gguf"])
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1, result.output
    assert error[0].startswith("error: cannot download t3test/Not-In-The-Cache (LocalEntryNotFoundError); "
                               f"cache folder: {world['cache']}")
    assert not (fresh_data / "adapters" / MISSING).exists()


def test_a_repo_without_safetensors_weights_is_refused(world: dict[str, Any], fresh_data: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from t3edge.cli import cli

    only_config = {"adapter_config.json": world["root"] / "peft" / "adapter_config.json"}
    cache_repo(world["cache"], "t3test/Bin-Lora", only_config)
    config = fresh_data.parent / "config"
    config.mkdir()
    (config / "models.toml").write_text(USER_CONFIG.replace("t3test/Not-In-The-Cache", "t3test/Bin-Lora"))
    monkeypatch.setenv("T3EDGE_CONFIG_DIR", str(config))
    result = CliRunner().invoke(cli, ["models", "pull", MISSING, "--backend", "mlx"])
    assert result.exit_code == 1
    assert "error: t3test/Bin-Lora has no adapter_model.safetensors" in result.output, result.output


def test_core_never_imports_converters() -> None:
    import subprocess
    import sys

    code = ("import sys, t3edge.models, t3edge.backends, t3edge.cli.models; "
            "print(any(m == 'converters' or m.startswith('converters.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr

