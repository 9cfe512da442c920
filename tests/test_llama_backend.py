"""The llama.cpp backend on tiny converted models: images through mtmd, KV prefix reuse across an
agent-like conversation, streaming, stop strings, sampling seeds, and clean errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend_checks import threads_get_what_each_call_gets_alone
from t3edge.backends.base import Completion, GenerationConfig, ImagePart, Message, TextDelta, TextPart
from t3edge.errors import BackendError
from t3edge.models import BackendSettings, ResolvedModel

pytest.importorskip("llama_cpp")

GREEDY = GenerationConfig(max_tokens=8, temperature=0.0)


@pytest.fixture(scope="module")
def gguf_pair(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2_vl: Path):
    from converters.hf_to_gguf import convert_to_gguf

    return convert_to_gguf(tiny_qwen2_vl, tmp_path_factory.mktemp("llama-gguf"), "f32")


def _backend(pair, **settings):  # noqa: ANN001, ANN202
    from t3edge.backends.llama import LlamaBackend

    resolved = ResolvedModel(spec="tiny", kind="gguf", path=str(pair.model), mmproj=str(pair.mmproj))
    return LlamaBackend(resolved, BackendSettings(n_threads=2, **settings))


@pytest.fixture(scope="module")
def backend(gguf_pair):  # noqa: ANN001, ANN201
    b = _backend(gguf_pair)
    yield b
    b.close()


def _task(image: Path) -> list[Message]:
    return [Message("system", "You write Python to use tools."),
            Message("user", [ImagePart(str(image)), TextPart("Task: what is in the image?")])]


def test_image_policy_matches_the_mlx_side(backend, tiny_qwen2_vl: Path) -> None:  # noqa: ANN001
    from t3edge.images import ImagePolicy

    expected = ImagePolicy.for_model(tiny_qwen2_vl, max_pixels=BackendSettings().max_image_pixels)
    assert backend.image_policy == expected


def test_answers_a_prompt_with_an_image(backend, test_image: Path) -> None:  # noqa: ANN001
    backend.reset()
    c = backend.generate(_task(test_image), GREEDY)
    assert c.usage.prompt_tokens > 64  # 64 image tokens plus the text
    assert c.usage.cached_tokens == 0
    assert 1 <= c.usage.generated_tokens <= 8 and len(c.token_ids) == c.usage.generated_tokens


def test_four_step_conversation_reuses_the_prefix(backend, gguf_pair, test_image: Path) -> None:  # noqa: ANN001
    backend.reset()
    messages = _task(test_image)
    previous_prompt = 0
    for step in range(4):
        c = backend.generate(messages, GREEDY)
        if step == 0:
            assert c.usage.cached_tokens == 0
        else:
            # everything up to the previous prompt (the 64 image tokens included) is reused;
            # only the newest assistant turn and observation are evaluated
            assert c.usage.cached_tokens >= previous_prompt > 64
        previous_prompt = c.usage.prompt_tokens
        messages += [Message("assistant", c.text),
                     Message("user", f"[OUTPUT OF STEP {step}] -> Observation: value {step * 7}")]
    warm = backend.generate(messages, GREEDY)
    cold = _backend(gguf_pair)
    try:
        reference = cold.generate(messages, GREEDY)
    finally:
        cold.close()
    assert reference.usage.cached_tokens == 0
    assert warm.token_ids == reference.token_ids


def test_same_prompt_twice_reevaluates_only_the_last_token(backend, test_image: Path) -> None:  # noqa: ANN001
    backend.reset()
    first = backend.generate(_task(test_image), GREEDY)
    again = backend.generate(_task(test_image), GREEDY)
    assert again.usage.cached_tokens == first.usage.prompt_tokens - 1
    assert again.token_ids == first.token_ids


def test_streaming_and_stop_strings(backend, test_image: Path) -> None:  # noqa: ANN001
    backend.reset()
    config = GenerationConfig(max_tokens=24, temperature=0.0)
    items = list(backend.stream(_task(test_image), config))
    done = items[-1]
    assert isinstance(done, Completion)
    assert "".join(i.text for i in items if isinstance(i, TextDelta)) == done.text
    if len(done.text) < 4:
        pytest.skip("the random model stopped too early to pick a stop string")
    stop = done.text[2:4]
    stopped = backend.generate(_task(test_image), config.model_copy(update={"stop": [stop]}))
    assert stopped.finish_reason == "stop_string" and stopped.stop_string == stop
    assert stopped.text == done.text[: done.text.index(stop)]


def test_sampling_is_reproducible_with_a_seed(backend, test_image: Path) -> None:  # noqa: ANN001
    config = GenerationConfig(max_tokens=8, temperature=1.0, top_p=0.9, seed=7)
    a = backend.generate(_task(test_image), config)
    b = backend.generate(_task(test_image), config)
    assert a.token_ids == b.token_ids


def test_closing_a_stream_early_leaves_the_backend_usable(backend, test_image: Path) -> None:  # noqa: ANN001
    backend.reset()
    stream = backend.stream(_task(test_image), GenerationConfig(max_tokens=16))
    next(stream, None)
    stream.close()
    c = backend.generate(_task(test_image), GREEDY)
    assert c.usage.generated_tokens >= 1


def test_load_backend_finds_the_mmproj(gguf_pair, test_image: Path) -> None:  # noqa: ANN001
    from t3edge.loading import load_backend

    b = load_backend(str(gguf_pair.model))
    try:
        assert b.name == "llama" and b.supports_images
        assert b.generate(_task(test_image), GREEDY).usage.prompt_tokens > 64
    finally:
        b.close()


def test_image_without_mmproj_is_a_clean_error(gguf_pair, test_image: Path) -> None:  # noqa: ANN001
    from t3edge.backends.llama import LlamaBackend

    b = LlamaBackend(ResolvedModel(spec="t", kind="gguf", path=str(gguf_pair.model)), BackendSettings())
    try:
        assert not b.supports_images
        assert b.generate([Message("user", "hello")], GREEDY).usage.prompt_tokens > 0
        with pytest.raises(BackendError, match="vision projector"):
            b.generate(_task(test_image), GREEDY)
    finally:
        b.close()


def test_prompt_longer_than_the_context_is_a_clean_error(gguf_pair, test_image: Path) -> None:  # noqa: ANN001
    b = _backend(gguf_pair, context_length=64)
    try:
        with pytest.raises(BackendError, match="context"):
            b.generate(_task(test_image), GREEDY)
    finally:
        b.close()


@pytest.mark.parametrize("outtype", ["f16", "bf16", "q8_0"])
def test_every_output_type_runs(tiny_qwen2_5_vl: Path, tmp_path: Path, test_image: Path, outtype: str) -> None:
    from converters.hf_to_gguf import convert_to_gguf

    b = _backend(convert_to_gguf(tiny_qwen2_5_vl, tmp_path, outtype))  # type: ignore[arg-type]
    try:
        c = b.generate(_task(test_image), GREEDY)
        assert c.usage.prompt_tokens > 64 and c.usage.generated_tokens >= 1
    finally:
        b.close()


def test_calls_from_several_threads_take_turns(backend, test_image: Path) -> None:  # noqa: ANN001
    other = [Message("system", "You write Python to use tools."), Message("user", "Task: add 2 and 3.")]
    threads_get_what_each_call_gets_alone(backend, [_task(test_image), other], GREEDY)
