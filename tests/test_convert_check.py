"""GGUF validation before llama.cpp sees a file: corrupt, truncated and mismatched files are
clean errors and the test process survives; `t3edge convert inspect` summarizes files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from converters.hf_to_gguf import convert_to_gguf
from t3edge.errors import BackendError, BadInput
from t3edge.gguf_check import check_gguf
from t3edge.models import BackendSettings, ResolvedModel


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2_vl: Path):
    return convert_to_gguf(tiny_qwen2_vl, tmp_path_factory.mktemp("check"), "f16")


def _damaged(src: Path, dst: Path, edit) -> Path:  # noqa: ANN001
    data = bytearray(src.read_bytes())
    dst.write_bytes(bytes(edit(data)))
    return dst


def _cut(n: int):  # noqa: ANN202
    return lambda d: d[:n]


def _poke(offset: int, raw: bytes):  # noqa: ANN202
    def edit(d: bytearray) -> bytearray:
        d[offset:offset + len(raw)] = raw
        return d
    return edit


CASES = {
    "truncated data": (lambda size: _cut(size - 1000), "truncated"),
    "truncated header": (lambda size: _cut(200), "past the end"),
    "bad magic": (lambda size: _poke(0, b"GGUX"), "magic"),
    "bad version": (lambda size: _poke(4, struct.pack("<I", 99)), "version"),
    "absurd tensor count": (lambda size: _poke(8, struct.pack("<Q", 1 << 40)), "implausible"),
    "empty file": (lambda size: _cut(0), "magic"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_files_are_rejected(pair, tmp_path: Path, case: str) -> None:  # noqa: ANN001
    make, message = CASES[case]
    bad = _damaged(pair.model, tmp_path / "bad.gguf", make(pair.model.stat().st_size))
    with pytest.raises(BadInput, match=message):
        check_gguf(bad)


def test_corrupt_tensor_offset_is_rejected(pair, tmp_path: Path) -> None:  # noqa: ANN001
    info = check_gguf(pair.model)
    last = max(info.tensors, key=lambda t: t.offset)
    raw = pair.model.read_bytes()
    # the offset field follows the tensor's name in the tensor table; make it point past the end
    name = last.name.encode()
    pos = raw.rindex(struct.pack("<Q", len(name)) + name)
    n_dims = struct.unpack_from("<I", raw, pos + 8 + len(name))[0]
    field = pos + 8 + len(name) + 4 + 8 * n_dims + 4
    bad = _damaged(pair.model, tmp_path / "offset.gguf", _poke(field, struct.pack("<Q", 1 << 30)))
    with pytest.raises(BadInput, match="runs past the end"):
        check_gguf(bad)


def test_llama_backend_refuses_a_truncated_model_and_the_process_survives(pair, tmp_path: Path) -> None:  # noqa: ANN001
    pytest.importorskip("llama_cpp")
    from t3edge.backends.llama import LlamaBackend

    bad = _damaged(pair.model, tmp_path / "bad.gguf", _cut(pair.model.stat().st_size // 2))
    with pytest.raises(BackendError, match="truncated"):
        LlamaBackend(ResolvedModel(spec="bad", kind="gguf", path=str(bad), mmproj=str(pair.mmproj)),
                     BackendSettings())
    bad_proj = _damaged(pair.mmproj, tmp_path / "mmproj-bad.gguf", _poke(0, b"XXXX"))
    with pytest.raises(BackendError, match="magic"):
        LlamaBackend(ResolvedModel(spec="bad", kind="gguf", path=str(pair.model), mmproj=str(bad_proj)),
                     BackendSettings())


def test_files_swapped_are_rejected(pair) -> None:  # noqa: ANN001
    pytest.importorskip("llama_cpp")
    from t3edge.backends.llama import LlamaBackend

    with pytest.raises(BackendError, match="expected a model"):
        LlamaBackend(ResolvedModel(spec="x", kind="gguf", path=str(pair.mmproj), mmproj=str(pair.model)),
                     BackendSettings())


def test_mmproj_of_another_model_is_rejected(pair, tmp_path: Path) -> None:  # noqa: ANN001
    pytest.importorskip("llama_cpp")
    from t3edge.backends.llama import LlamaBackend
    from tinymodels import build_tiny_model

    other = convert_to_gguf(build_tiny_model(tmp_path / "wide", "qwen2_vl", hidden_size=96, heads=6),
                            tmp_path / "wide-gguf", "f16")
    with pytest.raises(BackendError, match="projects images to 96"):
        LlamaBackend(ResolvedModel(spec="x", kind="gguf", path=str(pair.model), mmproj=str(other.mmproj)),
                     BackendSettings())


def test_lora_that_does_not_fit_the_base_is_rejected(pair, tmp_path: Path, tiny_qwen2_vl: Path) -> None:  # noqa: ANN001
    pytest.importorskip("llama_cpp")
    from converters.lora import random_adapter, write_gguf_lora
    from converters.source import ModelSource
    from t3edge.backends.llama import LlamaBackend
    from tinymodels import build_tiny_model

    other = ModelSource(build_tiny_model(tmp_path / "wide", "qwen2_vl", hidden_size=96, heads=6, kv_heads=2))
    lora = write_gguf_lora(random_adapter(other), tmp_path / "wide-lora.gguf", n_layers=2)
    with pytest.raises(BackendError, match="do not fit"):
        LlamaBackend(ResolvedModel(spec="x", kind="gguf", path=str(pair.model), mmproj=str(pair.mmproj)),
                     BackendSettings(), adapter=str(lora))
    from converters.lora import check_fits

    with pytest.raises(BadInput, match="different base model"):
        check_fits(random_adapter(other), ModelSource(tiny_qwen2_vl))
    with pytest.raises(BackendError, match="needs a GGUF LoRA"):
        LlamaBackend(ResolvedModel(spec="x", kind="gguf", path=str(pair.model)), BackendSettings(),
                     adapter=str(tmp_path))


def test_inspect_cli(pair, tiny_qwen2_vl: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from t3edge.cli import cli

    runner = CliRunner()
    out = runner.invoke(cli, ["convert", "inspect", str(pair.mmproj), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["kind"] == "mmproj" and data["architecture"] == "clip"
    assert data["metadata"]["clip.projector_type"] == "qwen2vl_merger"
    out = runner.invoke(cli, ["convert", "inspect", str(tiny_qwen2_vl)])
    assert out.exit_code == 0 and "qwen2_vl" in out.output and "valid" in out.output
    bad = _damaged(pair.model, tmp_path / "bad.gguf", _cut(100))
    out = runner.invoke(cli, ["convert", "inspect", str(bad)])
    assert out.exit_code != 0 and "not a valid GGUF" in out.output
