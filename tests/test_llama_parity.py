"""Token-for-token parity: mlx-vlm on the Hugging Face folder vs llama.cpp on our f32 GGUF.

Conditions (docs/convert.md): f32 GGUF, f32 KV cache, an image whose sides are multiples of 28
(224 x 224 -> 64 merged tokens), greedy decoding with end-of-generation tokens masked so a random
model cannot stop early. llama.cpp's qwen2vl graph runs its RMS norms with epsilon 0 whatever
the file says, so these models are built with rms_norm_eps=1e-12, whose effect is far below the
tolerance. The image path differs by a few 1e-4 because llama.cpp's CPU vision encoder is not
pure f32 (f16 im2col, table GELUs); text-only logits agree to ~1e-6. Tolerance: 2e-3 absolute on
logits of magnitude ~2, which a dropped bias, a swapped q/k or wrong rope sections exceed by far.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from t3edge.backends.base import ImagePart, Message, TextPart
from t3edge.models import BackendSettings, ResolvedModel

pytest.importorskip("llama_cpp")
mx = pytest.importorskip("mlx.core")

N_TOKENS = 10
LOGIT_TOL = 2e-3
TEXT_TOL = 1e-4


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def parity_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    from converters.hf_to_gguf import convert_to_gguf
    from tinymodels import build_tiny_model

    root = tmp_path_factory.mktemp(f"parity-{request.param}")
    src = build_tiny_model(root / "hf", request.param, rms_norm_eps=1e-12, seed=3)
    pair = convert_to_gguf(src, root / "gguf", "f32")
    return src, pair


def _llama(pair, adapter: str | None = None):  # noqa: ANN001, ANN202
    from t3edge.backends.llama import LlamaBackend

    resolved = ResolvedModel(spec="parity", kind="gguf", path=str(pair.model), mmproj=str(pair.mmproj))
    return LlamaBackend(resolved, BackendSettings(f32_kv_cache=True, n_threads=2), adapter=adapter)


def _mlx_trace(model_dir: Path, prompt: str, image: Path | None, adapter: Path | None = None):  # noqa: ANN202
    """Greedy ids (end-of-generation masked) and first-position logits from mlx-vlm."""
    from mlx_vlm import load
    from mlx_vlm.utils import prepare_inputs
    from PIL import Image

    model, processor = load(str(model_dir), adapter_path=str(adapter) if adapter else None)
    tok = processor.tokenizer
    eog = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    if image is not None:
        inputs = prepare_inputs(processor, images=[Image.open(image).convert("RGB")], prompts=[prompt])
        ids, extra = inputs["input_ids"], {"pixel_values": inputs["pixel_values"],
                                            "image_grid_thw": inputs["image_grid_thw"]}
    else:
        ids, extra = mx.array([tok.encode(prompt, add_special_tokens=False)]), {"pixel_values": None}
    out, first = [], None
    for _ in range(N_TOKENS):
        # a full forward each step (no KV cache): drop the positions mlx-vlm keeps between calls
        model.language_model._rope_deltas = model.language_model._position_ids = None
        logits = np.array(model(ids, mask=None, **extra).logits[0, -1].astype(mx.float32))
        if first is None:
            first = logits.copy()
        logits[eog] = -np.inf
        out.append(int(logits.argmax()))
        ids = mx.concatenate([ids, mx.array([[out[-1]]])], axis=1)
    return out, first


def _image_messages(image: Path) -> list[Message]:
    return [Message("user", [ImagePart(str(image)), TextPart("Describe the image.")])]


def _mlx_prompt(backend, messages: list[Message]) -> str:  # noqa: ANN001
    """The llama backend's rendered prompt with its media marker in the HF image form."""
    return backend.render(messages).replace("<__media__>", "<|vision_start|><|image_pad|><|vision_end|>")


@pytest.mark.slow
def test_image_prompt_parity(parity_model, test_image: Path) -> None:
    src, pair = parity_model
    backend = _llama(pair)
    messages = _image_messages(test_image)
    ids, first = backend.greedy_trace(messages, N_TOKENS)
    ref_ids, ref_first = _mlx_trace(src, _mlx_prompt(backend, messages), test_image)
    backend.close()
    assert ids == ref_ids
    assert np.abs(first - ref_first).max() < LOGIT_TOL
    assert np.abs(ref_first).max() > 0.1  # the comparison is not between two near-zero vectors


@pytest.mark.slow
def test_text_prompt_parity(parity_model) -> None:
    src, pair = parity_model
    backend = _llama(pair)
    messages = [Message("user", "Count the people in the photo, then print the answer.")]
    ids, first = backend.greedy_trace(messages, N_TOKENS)
    ref_ids, ref_first = _mlx_trace(src, backend.render(messages), None)
    backend.close()
    assert ids == ref_ids
    assert np.abs(first - ref_first).max() < TEXT_TOL


@pytest.mark.slow
def test_lora_parity(parity_model, test_image: Path, tmp_path: Path) -> None:
    """An MLX adapter in mlx-vlm vs its GGUF conversion applied by llama.cpp."""
    from converters.lora import random_adapter, read_mlx, write_gguf_lora, write_mlx
    from converters.source import ModelSource

    src, pair = parity_model
    adapter_dir = write_mlx(random_adapter(ModelSource(src), std=0.2, seed=5), tmp_path / "adapter")
    gguf_lora = write_gguf_lora(read_mlx(adapter_dir), tmp_path / "lora.gguf", n_layers=2)
    backend = _llama(pair, adapter=str(gguf_lora))
    messages = _image_messages(test_image)
    ids, first = backend.greedy_trace(messages, N_TOKENS)
    ref_ids, ref_first = _mlx_trace(src, _mlx_prompt(backend, messages), test_image, adapter=adapter_dir)
    base_ids, base_first = _llama(pair).greedy_trace(messages, N_TOKENS)
    backend.close()
    assert ids == ref_ids
    assert np.abs(first - ref_first).max() < LOGIT_TOL
    assert np.abs(first - base_first).max() > 50 * LOGIT_TOL  # the adapter really changes the model
