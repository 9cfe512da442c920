"""The `t3edge` command as a user runs it: real subprocesses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from t3edge import __version__


def t3(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["t3edge", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_version_and_help() -> None:
    assert t3("--version").stdout.strip() == f"t3edge, version {__version__}"
    out = t3("--help").stdout
    for cmd in ("run", "chat", "generate", "models", "config", "convert", "train", "eval", "synth", "dev"):
        assert f"  {cmd} " in out


def test_the_tiny_model_command_offers_every_architecture_the_builder_has() -> None:
    from t3edge.cli.dev import ARCHS
    from tinymodels import ARCHS as BUILT

    assert ARCHS == BUILT


@pytest.mark.slow
def test_tiny_model_then_generate_streams_and_reports_counts(tmp_path: Path, test_image: Path) -> None:
    made = t3("dev", "tiny-model", "tiny", "--arch", "qwen2_5_vl", cwd=tmp_path)
    assert made.returncode == 0 and (tmp_path / "tiny" / "model.safetensors").is_file()
    run = t3("generate", "--model", "tiny", "--image", str(test_image), "--max-tokens", "8",
             "Describe the image", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "[mlx] prompt" in run.stderr and "tokens/s" in run.stderr and "cached 0" in run.stderr
    generated = int(run.stderr.split("generated ")[1].split()[0])
    assert 0 < generated <= 8


@pytest.mark.parametrize("args, message", [
    (["generate", "--model", "tiny", "--image", "missing.png", "hi"], "error: image not found: missing.png"),
    (["generate", "--model", "tiny", "--image", "corrupt.png", "hi"], "error: cannot read image corrupt.png"),
    (["generate", "--model", "noconfig", "hi"], "error: model folder noconfig has no config.json"),
    (["generate", "--model", "no-such-model", "hi"], "error: unknown model 'no-such-model'"),
    (["models", "pull", "qwen2-vl-2b", "--backend", "gguf"], "error: cannot download ggml-org/Qwen2-VL-2B-Instruct-GGUF"),
    (["config", "show", "models", "--config", "broken.toml"], "error: invalid TOML in broken.toml"),
])
def test_bad_input_is_one_line_without_traceback(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "noconfig").mkdir()
    (tmp_path / "broken.toml").write_text("[generation\n")
    result = t3(*args, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = t3("--debug", "generate", "--model", "no-such-model", "hi", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_config_show_and_models_list() -> None:
    shown = t3("config", "show", "models")
    assert shown.returncode == 0 and "generation.max_tokens" in shown.stdout and "default" in shown.stdout
    listed = t3("models", "list")
    assert listed.returncode == 0 and "qwen2.5-vl-7b" in listed.stdout and "smolvlm-500m" in listed.stdout


def test_a_file_system_error_is_one_line_with_advice(tmp_path: Path) -> None:
    result = t3("dev", "tiny-model", "/proc/t3edge-cannot-be-here", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "/proc/t3edge-cannot-be-here" in lines[0] and "permissions" in lines[0]
