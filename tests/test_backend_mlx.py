"""The MLX backend on the tiny models, through the real mlx-vlm."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend_checks import threads_get_what_each_call_gets_alone
from t3edge.loading import load_backend
from t3edge.backends.base import Completion, GenerationConfig, ImagePart, Message, TextDelta, TextPart
from t3edge.errors import BackendError, BadInput

GREEDY = GenerationConfig(max_tokens=10, temperature=0.0)


def _task(image: Path) -> list[Message]:
    return [Message("system", "You solve tasks with code."),
            Message("user", [ImagePart(image), TextPart("Task: what is in the image?")])]


def test_generate_with_an_image_streams_and_counts(tiny_model: Path, test_image: Path) -> None:
    backend = load_backend(str(tiny_model))
    assert backend.name == "mlx" and backend.supports_images and backend.context_length == 4096
    items = list(backend.stream(_task(test_image), GREEDY))
    deltas = [i.text for i in items if isinstance(i, TextDelta)]
    done = items[-1]
    assert isinstance(done, Completion) and sum(isinstance(i, Completion) for i in items) == 1
    assert "".join(deltas) == done.text
    u = done.usage
    assert u.prompt_tokens > 64  # 64 image tokens + the text
    assert u.cached_tokens == 0 and 0 < u.generated_tokens <= 10
    assert len(done.token_ids) == u.generated_tokens
    assert u.prompt_seconds > 0


def test_prefix_reuse_reports_cached_tokens_and_matches_a_cold_call(tiny_model: Path, test_image: Path) -> None:
    backend = load_backend(str(tiny_model))
    first = backend.generate(_task(test_image), GREEDY)
    convo = _task(test_image) + [
        Message("assistant", first.text),
        Message("user", "[OUTPUT OF STEP 0] -> Observation:\nthree cats"),
    ]
    warm = backend.generate(convo, GREEDY)
    assert warm.usage.cached_tokens > 64
    assert warm.usage.cached_tokens < warm.usage.prompt_tokens
    backend.reset()
    cold = backend.generate(convo, GREEDY)
    assert cold.usage.cached_tokens == 0
    assert warm.token_ids == cold.token_ids and warm.text == cold.text


def test_cancelled_stream_leaves_the_backend_usable(tiny_qwen2_vl: Path, test_image: Path) -> None:
    backend = load_backend(str(tiny_qwen2_vl))
    stream = backend.stream(_task(test_image), GenerationConfig(max_tokens=50))
    next(stream)
    stream.close()  # as a cancelled agent run does
    again = backend.generate(_task(test_image), GREEDY)
    backend.reset()
    assert again.token_ids == backend.generate(_task(test_image), GREEDY).token_ids


def test_stop_strings_cut_the_output(tiny_qwen2_vl: Path, test_image: Path) -> None:
    backend = load_backend(str(tiny_qwen2_vl))
    full = backend.generate(_task(test_image), GenerationConfig(max_tokens=20))
    assert len(full.text) > 4
    stop = full.text[2:4]
    cut = backend.generate(_task(test_image), GenerationConfig(max_tokens=20, stop=[stop]))
    assert cut.finish_reason == "stop_string" and cut.stop_string == stop
    assert cut.text == full.text[: full.text.find(stop)]


def test_seeded_sampling_is_reproducible(tiny_qwen2_vl: Path, test_image: Path) -> None:
    backend = load_backend(str(tiny_qwen2_vl))
    cfg = GenerationConfig(max_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    a = backend.generate(_task(test_image), cfg)
    backend.reset()
    b = backend.generate(_task(test_image), cfg)
    assert a.token_ids == b.token_ids


def test_bad_inputs(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    backend = load_backend(str(tiny_qwen2_vl))
    with pytest.raises(BadInput, match="image not found"):
        backend.generate(_task(tmp_path / "nope.png"), GREEDY)
    with pytest.raises(BackendError, match="no MLX adapter"):
        load_backend(str(tiny_qwen2_vl), adapter=str(tmp_path))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "qwen2_vl"}')
    with pytest.raises(BackendError, match="has no .safetensors weights"):
        load_backend(str(broken))
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(BackendError, match="cannot load the MLX model.*t3edge convert inspect"):
        load_backend(str(broken))


def test_calls_from_several_threads_take_turns(tiny_qwen2_vl: Path, test_image: Path) -> None:
    backend = load_backend(str(tiny_qwen2_vl))
    other = [Message("system", "You solve tasks with code."), Message("user", "Task: add 2 and 3.")]
    threads_get_what_each_call_gets_alone(backend, [_task(test_image), other], GREEDY)
