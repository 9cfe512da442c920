"""GGUF -> MLX (`t3edge convert from-gguf`) on the real SmolLM2-135M (llama, Q4_1/Q8_0) and
Gemma 3 270M (gemma3, Q4_K_M: Q8_0, Q5_0, Q4_K, Q6_K) GGUFs, the parity check against llama.cpp,
and the text-only MLX backend on the converted folder.

Tolerances (first-position logits, relative to the largest |logit|), from measurements:
- against llama.cpp on the same GGUF: SmolLM2 0.019 (both modes), Gemma 0.084. That floor is
  llama.cpp's own: on the CPU it quantizes activations to 8 bits for quantized matmuls, and
  llama.cpp on an F32 copy of the same file (identical weight values) differs from itself on the
  quantized one by the same 0.019 / 0.079. Asserted: 0.04 and 0.15.
- against llama.cpp on that F32 copy, where only float arithmetic differs, the kept-quantized
  SmolLM2 folder agrees to 6e-5 absolute (2e-6 relative); asserted 1e-3 absolute. A wrong rope
  layout, norm, epsilon or rope base is far outside that.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from t3edge.backends.base import Completion, GenerationConfig, Message, TextDelta
from t3edge.errors import BadInput

pytest.importorskip("llama_cpp")
mx = pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")

CHAT = [Message("system", "You are a helpful assistant."),
        Message("user", "Write one sentence about the sea, then count from one to five.")]
GREEDY = GenerationConfig(max_tokens=12, temperature=0.0)


# --- folders, converted once per module ---------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_mlx(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from converters.from_gguf import convert_from_gguf

    return convert_from_gguf(smollm2_gguf, tmp_path_factory.mktemp("smollm2") / "q")


@pytest.fixture(scope="module")
def smollm2_mlx_float(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from converters.from_gguf import convert_from_gguf

    return convert_from_gguf(smollm2_gguf, tmp_path_factory.mktemp("smollm2") / "f16", dequantize=True)


@pytest.fixture(scope="module")
def gemma3_mlx(gemma3_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from converters.from_gguf import convert_from_gguf

    return convert_from_gguf(gemma3_gguf, tmp_path_factory.mktemp("gemma3") / "q")


@pytest.fixture(scope="module")
def text_backend(smollm2_mlx: Path):
    from t3edge.loading import load_backend

    return load_backend(str(smollm2_mlx))


# --- block repacking and layouts (no model needed) ----------------------------------------------

@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"])
def test_gguf_blocks_repack_exactly_into_mlx_affine(qtype: str) -> None:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    from converters.from_gguf import _AFFINE_BITS, affine_blocks, pack_bits

    t = GGMLQuantizationType[qtype]
    x = np.random.default_rng(0).standard_normal((6, 128)).astype(np.float32)
    raw = quantize(x, t)
    q, scale, bias = affine_blocks(qtype, raw.reshape(6, 4, GGML_QUANT_SIZES[t][1]))
    bits = _AFFINE_BITS[qtype]
    ours = mx.dequantize(mx.array(pack_bits(q, bits)), mx.array(scale.astype(np.float32)),
                         mx.array(bias.astype(np.float32)), group_size=32, bits=bits)
    assert np.array_equal(np.array(ours), dequantize(raw, t))


def test_the_llama_cpp_qk_row_layout_and_its_inverse() -> None:
    from converters.llama_layout import from_llama_cpp_rows, to_llama_cpp_rows

    heads, head_dim, cols = 3, 8, 5
    w = np.arange(heads * head_dim * cols).reshape(heads * head_dim, cols)
    # what llama.cpp's converter does to q_proj/k_proj rows, per head: (2, d/2) -> (d/2, 2)
    permuted = w.reshape(heads, 2, head_dim // 2, cols).swapaxes(1, 2).reshape(w.shape)
    assert np.array_equal(to_llama_cpp_rows(w, heads), permuted)
    assert np.array_equal(from_llama_cpp_rows(permuted, heads), w)
    assert permuted[1, 0] == w[head_dim // 2, 0]  # row 1 of a head is the second half's first row


@pytest.mark.real
def test_a_truncated_gguf_is_one_line_and_writes_nothing(smollm2_gguf: Path, tmp_path: Path) -> None:
    from converters.from_gguf import convert_from_gguf

    cut = tmp_path / "cut.gguf"
    with open(smollm2_gguf, "rb") as f:
        cut.write_bytes(f.read(1 << 20))
    with pytest.raises(BadInput) as err:
        convert_from_gguf(cut, tmp_path / "out")
    assert "not a valid GGUF file" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_an_unsupported_architecture_is_named(tmp_path: Path) -> None:
    import gguf

    from converters.from_gguf import convert_from_gguf

    path = tmp_path / "qwen2vl.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen2vl")
    writer.add_block_count(1)
    writer.add_token_list(["a", "b"])
    writer.add_tensor("token_embd.weight", np.zeros((2, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(BadInput, match=r"architecture 'qwen2vl' cannot be converted.*supported architectures: llama, gemma3"):
        convert_from_gguf(path, tmp_path / "out")


# --- the folders and parity with llama.cpp ------------------------------------------------------

@pytest.mark.real
def test_the_smollm2_folder_is_standard_mlx_lm(smollm2_mlx: Path) -> None:
    config = json.loads((smollm2_mlx / "config.json").read_text())
    assert config["model_type"] == "llama" and config["tie_word_embeddings"] is True
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_key_value_heads"]) == (576, 30, 3)
    assert config["rope_theta"] == 100000.0 and config["eos_token_id"] == [0, 2]
    q = config["quantization"]
    assert q["model.embed_tokens"] == {"group_size": 32, "bits": 8}
    assert q["model.layers.0.self_attn.q_proj"] == {"group_size": 32, "bits": 4}
    tokenizer_config = json.loads((smollm2_mlx / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tokenizer_config["chat_template"]


@pytest.mark.real
def test_the_tokenizers_split_text_like_llama_cpp(smollm2_gguf: Path, smollm2_mlx: Path,
                                                  gemma3_gguf: Path, gemma3_mlx: Path) -> None:
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr
    from tokenizers import Tokenizer

    texts = ["Hello  world!! 12345 3.14", "<|im_start|>user\nWhat's up?<|im_end|>\n",
             "<start_of_turn>user\nhi<end_of_turn>\n", "Ünïcode 日本語 🤖 ΑΒΓ\u00a0x\u200b", "def f(x):\n\treturn x**2\n\n\n",
             "   lead\n\n  \t tabs", "I'm sure they'll've done it", "<table><tr><td>x</td></tr></table>", "a" * 40]
    for gguf_file, folder in ((smollm2_gguf, smollm2_mlx), (gemma3_gguf, gemma3_mlx)):
        ours = Tokenizer.from_file(str(folder / "tokenizer.json"))
        with suppress_stdout_stderr(disable=False):
            ref = llama_cpp.Llama(model_path=str(gguf_file), vocab_only=True, verbose=False)
        try:
            for text in texts:
                ids = ours.encode(text, add_special_tokens=False).ids
                assert ids == ref.tokenize(text.encode(), add_bos=False, special=True), (folder, text)
                assert ours.decode(ids, skip_special_tokens=False) == text
        finally:
            ref.close()


def _assert_parity(report, rel_tol: float) -> None:  # noqa: ANN001 (ParityReport)
    assert report.prompt_equal and report.prompt_tokens > 20
    assert report.llama_ids == report.mlx_ids and len(report.mlx_ids) == 12
    assert report.argmax_equal
    assert report.max_rel < rel_tol, report.to_json()


@pytest.mark.parametrize("mode", ["quantized", "dequantized"])
@pytest.mark.real
@pytest.mark.slow
def test_smollm2_matches_llama_cpp(mode: str, smollm2_gguf: Path, request: pytest.FixtureRequest) -> None:
    from converters.parity import check_parity

    folder = request.getfixturevalue("smollm2_mlx" if mode == "quantized" else "smollm2_mlx_float")
    _assert_parity(check_parity(smollm2_gguf, folder, CHAT), rel_tol=0.04)


@pytest.mark.real
@pytest.mark.slow
def test_gemma3_matches_llama_cpp(gemma3_gguf: Path, gemma3_mlx: Path) -> None:
    from converters.parity import check_parity

    config = json.loads((gemma3_mlx / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["sliding_window"] == 512
    assert config["query_pre_attn_scalar"] == 256 and config["eos_token_id"] == [1, 106]
    assert {v["bits"] for k, v in config["quantization"].items() if isinstance(v, dict)} == {5, 8}
    _assert_parity(check_parity(gemma3_gguf, gemma3_mlx, CHAT), rel_tol=0.15)


@pytest.mark.real
@pytest.mark.slow
def test_kept_quantized_weights_are_exact(smollm2_gguf: Path, smollm2_mlx: Path, tmp_path: Path) -> None:
    """llama.cpp on an F32 copy of the GGUF (same weight values) vs the kept-quantized folder."""
    import llama_cpp

    from converters.parity import check_parity

    f32 = tmp_path / "smollm2-f32.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize = llama_cpp.LLAMA_FTYPE_ALL_F32, True
    assert llama_cpp.llama_model_quantize(str(smollm2_gguf).encode(), str(f32).encode(), params) == 0
    report = check_parity(f32, smollm2_mlx, CHAT)
    assert report.tokens_equal
    assert report.max_abs < 1e-3, report.to_json()


# --- the text-only MLX backend -------------------------------------------------------------------

@pytest.mark.real
@pytest.mark.slow
def test_the_text_backend_streams_and_reuses_its_cache(text_backend) -> None:  # noqa: ANN001
    from t3edge.backends.mlx_text import MLXTextBackend

    b = text_backend
    assert isinstance(b, MLXTextBackend) and b.name == "mlx" and not b.supports_images
    assert b.context_length == 8192
    b.reset()
    items = list(b.stream(CHAT, GREEDY))
    done = items[-1]
    assert isinstance(done, Completion) and sum(isinstance(i, Completion) for i in items) == 1
    assert "".join(i.text for i in items if isinstance(i, TextDelta)) == done.text and done.text
    u = done.usage
    assert u.prompt_tokens == b.count_tokens(b.render(CHAT)) and u.cached_tokens == 0
    assert u.generated_tokens == len(done.token_ids) and 0 < u.generated_tokens <= 12
    assert u.prompt_seconds > 0 and u.generation_seconds > 0

    follow = [*CHAT, Message("assistant", done.text), Message("user", "Now count from six to ten.")]
    warm = b.generate(follow, GREEDY)
    assert warm.usage.prompt_tokens > u.prompt_tokens + u.generated_tokens
    assert u.prompt_tokens <= warm.usage.cached_tokens < warm.usage.prompt_tokens
    b.reset()
    cold = b.generate(follow, GREEDY)
    assert cold.usage.cached_tokens == 0 and cold.token_ids == warm.token_ids


@pytest.mark.real
def test_the_text_backend_cuts_stop_strings_and_survives_a_cancel(text_backend) -> None:  # noqa: ANN001
    b = text_backend
    full = b.generate(CHAT, GREEDY)
    stop = full.text[3:6]
    cut = b.generate(CHAT, GenerationConfig(max_tokens=12, stop=[stop]))
    assert cut.finish_reason == "stop_string" and cut.text == full.text[: full.text.find(stop)]
    assert cut.usage.cached_tokens == cut.usage.prompt_tokens - 1  # the same prompt again
    stream = b.stream(CHAT, GenerationConfig(max_tokens=12))
    next(stream)
    stream.close()
    assert b.generate(CHAT, GREEDY).token_ids == full.token_ids


@pytest.mark.real
def test_the_text_backend_refuses_images(text_backend, test_image: Path) -> None:  # noqa: ANN001
    from t3edge.backends.base import ImagePart, TextPart
    from t3edge.errors import BackendError

    with pytest.raises(BackendError, match="text-only"):
        text_backend.generate([Message("user", [ImagePart(test_image), TextPart("What is this?")])], GREEDY)


@pytest.mark.real
def test_a_folder_without_a_chat_template_gets_its_familys(smollm2_mlx: Path, tmp_path: Path) -> None:
    from t3edge.loading import load_backend

    folder = tmp_path / "base"
    folder.mkdir()
    for f in smollm2_mlx.iterdir():
        (folder / f.name).symlink_to(f)
    (folder / "tokenizer_config.json").unlink()
    config = json.loads((smollm2_mlx / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    prompt = load_backend(str(folder)).render([Message("user", "hi")])
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"  # ChatML, llama's fallback


@pytest.mark.real
def test_the_text_backend_loads_an_mlx_lm_adapter(smollm2_mlx: Path, text_backend, tmp_path: Path) -> None:  # noqa: ANN001
    from safetensors.numpy import save_file

    from t3edge.loading import load_backend

    rng = np.random.default_rng(0)
    weights = {}
    for layer in (28, 29):
        for proj, out in (("q_proj", 576), ("v_proj", 192)):
            key = f"model.layers.{layer}.self_attn.{proj}"
            weights[f"{key}.lora_a"] = rng.standard_normal((576, 4)).astype(np.float32) * 0.05
            weights[f"{key}.lora_b"] = rng.standard_normal((4, out)).astype(np.float32) * 0.05
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    save_file(weights, str(adapter / "adapters.safetensors"))
    (adapter / "adapter_config.json").write_text(json.dumps({
        "fine_tune_type": "lora", "num_layers": 2,
        "lora_parameters": {"rank": 4, "scale": 20.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.v_proj"]}}))
    tuned = load_backend(str(smollm2_mlx), adapter=str(adapter))
    assert tuned.adapter == str(adapter)
    text_backend.reset()
    assert tuned.generate(CHAT, GREEDY).token_ids != text_backend.generate(CHAT, GREEDY).token_ids


# --- the command line ---------------------------------------------------------------------------

@pytest.mark.real
@pytest.mark.slow
def test_the_commands(smollm2_gguf: Path, tmp_path: Path) -> None:
    from t3edge.cli import cli

    runner = CliRunner()
    out = tmp_path / "mlx"
    done = runner.invoke(cli, ["convert", "from-gguf", str(smollm2_gguf), str(out)])
    assert done.exit_code == 0, done.output
    assert "kept quantized: Q4_1 x210, Q8_0 x1" in done.output and "wrote" in done.output
    again = runner.invoke(cli, ["convert", "from-gguf", str(smollm2_gguf), str(out)])
    assert again.exit_code == 1 and "not empty" in again.output
    parity = runner.invoke(cli, ["convert", "parity", str(smollm2_gguf), str(out), "--tokens", "3", "--json"])
    assert parity.exit_code == 0, parity.output
    report = json.loads(parity.output[parity.output.index("{"):])
    assert report["tokens_equal"] and len(report["mlx_ids"]) == 3
