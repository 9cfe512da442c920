"""The OpenAI-compatible backend over real HTTP on 127.0.0.1: a scripted server for faults,
and mlx_vlm.server serving the tiny model for the real thing."""

from __future__ import annotations

import base64
import io
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from t3edge.loading import load_backend
from t3edge.backends.base import GenerationConfig, ImagePart, Message, TextPart
from t3edge.errors import BackendError
from t3edge.models import BackendSettings, ModelsConfig
from t3edge.scripted_server import Fault, ScriptedOpenAIServer, sequence

REPLY = "Thought: count\nCode:\n```py\nprint(3)\n```<end_action>\nObservation: 3"


def _cfg(**backend: object) -> ModelsConfig:
    return ModelsConfig(backend=BackendSettings(**{"timeout_s": 5.0, "max_retries": 3, **backend}))


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("t3edge.backends.openai.RETRY_BASE_S", 0.01)


def test_streams_text_usage_and_images_as_data_urls(test_image: Path) -> None:
    with ScriptedOpenAIServer(sequence(REPLY), model="served") as server:
        backend = load_backend(server.url, config=_cfg())
        msgs = [Message("system", "sys"), Message("user", [ImagePart(test_image), TextPart("Task: count")])]
        chunks = list(backend.stream(msgs, GenerationConfig(stop=["<end_action>", "Observation:"], seed=3)))
    done = chunks[-1]
    assert done.text == "Thought: count\nCode:\n```py\nprint(3)\n```"
    assert "".join(c.text for c in chunks[:-1]) == done.text
    assert done.usage.prompt_tokens > 0 and done.usage.generated_tokens > 0
    request = server.requests[0]
    assert request["model"] == "served" and request["stream"] is True and request["seed"] == 3
    url = request["messages"][1]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert img.size == (224, 224)  # normalized by the shared policy (already conforming)
    assert request["messages"][1]["content"][1] == {"type": "text", "text": "Task: count"}


def test_429_then_success_is_retried() -> None:
    with ScriptedOpenAIServer(sequence(Fault(status=429), Fault(status=429), "ok"), model="m") as server:
        backend = load_backend(server.url + "#m", config=_cfg())
        assert backend.generate([Message("user", "hi")], GenerationConfig()).text == "ok"
    assert backend.retries == 2 and len(server.requests) == 3


def test_a_500_is_retried_and_persistent_500s_give_one_clear_error() -> None:
    with ScriptedOpenAIServer(sequence(Fault(status=500), "fine"), model="m") as server:
        backend = load_backend(server.url + "#m", config=_cfg())
        assert backend.generate([Message("user", "hi")], GenerationConfig()).text == "fine"
    with ScriptedOpenAIServer(sequence(Fault(status=503)), model="m") as server:
        backend = load_backend(server.url + "#m", config=_cfg(max_retries=2))
        with pytest.raises(BackendError, match=r"HTTP 503.*after 3 attempts"):
            backend.generate([Message("user", "hi")], GenerationConfig())
    assert len(server.requests) == 3


def test_a_hanging_connection_times_out_then_recovers() -> None:
    with ScriptedOpenAIServer(sequence(Fault(hang_s=3.0), "late but fine"), model="m") as server:
        backend = load_backend(server.url + "#m", config=_cfg(timeout_s=0.5))
        start = time.perf_counter()
        assert backend.generate([Message("user", "hi")], GenerationConfig()).text == "late but fine"
        assert time.perf_counter() - start < 3.0
    assert backend.retries == 1


def test_client_errors_are_not_retried() -> None:
    with ScriptedOpenAIServer(sequence(Fault(status=401)), model="m") as server:
        backend = load_backend(server.url + "#m", config=_cfg())
        with pytest.raises(BackendError, match="HTTP 401"):
            backend.generate([Message("user", "hi")], GenerationConfig())
    assert len(server.requests) == 1


def test_a_reply_cut_short_by_the_server_is_an_error_not_an_answer() -> None:
    with ScriptedOpenAIServer(sequence(Fault(then="Thought: half of a", cut=True), "whole"), model="m") as server:
        backend = load_backend(server.url + "#m", config=_cfg())
        with pytest.raises(BackendError, match="without a finish reason") as caught:
            backend.generate([Message("user", "hi")], GenerationConfig())
        assert "--interrupt_requests False" in (caught.value.hint or "")
        assert backend.generate([Message("user", "hi")], GenerationConfig()).text == "whole"


def test_nothing_listening_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = load_backend(f"http://127.0.0.1:{port}/v1#m", config=_cfg(max_retries=1))
    with pytest.raises(BackendError, match="APIConnectionError after 2 attempts"):
        backend.generate([Message("user", "hi")], GenerationConfig())


@pytest.fixture
def mlx_server(tiny_qwen2_vl: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlx_vlm.server", "--model", str(tiny_qwen2_vl),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(url + "/models", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("mlx_vlm.server did not start")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_against_mlx_vlm_server_with_the_tiny_model(mlx_server: str, tiny_qwen2_vl: Path, test_image: Path) -> None:
    backend = load_backend(f"{mlx_server}#{tiny_qwen2_vl}", config=_cfg(timeout_s=60))
    msgs = [Message("user", [ImagePart(test_image), TextPart("Describe the image")])]
    done = backend.generate(msgs, GenerationConfig(max_tokens=6))
    assert done.usage.prompt_tokens > 64  # the image reached the model as pixels
    assert 0 < done.usage.generated_tokens <= 6
