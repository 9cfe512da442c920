"""`t3edge serve` over real HTTP on 127.0.0.1, with the openai client: agent tasks (streamed or
not, with an image), follow-ups, plain generation, a client that leaves mid-run, and bad requests
answered with clear JSON errors while the server stays up."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx  # the HTTP client the openai package is built on
import openai
import pytest
import uvicorn
from llama_servers import free_port
from PIL import Image

from t3edge.agent import AgentConfig
from t3edge.backends.replay import ReplayBackend
from t3edge.chats import ChatStore
from t3edge.protocol import format_step
from t3edge.serve.app import Server, ServeSettings

LOOK = format_step("I look at the image's size.",
                   "from PIL import Image\nsize = Image.open('image.png').size\nprint('size', size)\n"
                   "final_answer(f'{size[0]} by {size[1]}')")
COUNT = format_step("Count.", "print('counted')\nfinal_answer('three cats')")


def answer(text: str) -> str:
    return format_step("Answer.", f"print('ok')\nfinal_answer({text!r})")


@contextlib.contextmanager
def serving(backend: ReplayBackend, tmp_path: Path, **settings: object) -> Iterator[tuple[str, ChatStore]]:
    """The server over `backend` on a free port, in this process; yields its /v1 URL and store."""
    store = ChatStore(tmp_path / "chats.db")
    options: dict[str, object] = {"model_name": "tiny", "agent": AgentConfig(workspace=tmp_path / "work", format="free"),
                                  "uploads": tmp_path / "uploads", **settings}
    app = Server(backend, store, ServeSettings(**options)).app()  # type: ignore[arg-type]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1", store
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        store.close()


def data_url(size: tuple[int, int] = (64, 48), noise: bool = False) -> str:
    buf = io.BytesIO()
    image = Image.effect_noise(size, 80).convert("RGB") if noise else Image.new("RGB", size, "orange")
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_message(text: str, url: str) -> dict[str, object]:
    return {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}


def test_a_task_with_an_image_streamed_and_not(tmp_path: Path) -> None:
    with serving(ReplayBackend([LOOK, LOOK]), tmp_path) as (url, store):
        client = openai.OpenAI(base_url=url, api_key="none")
        reply = client.chat.completions.create(model="tiny", messages=[image_message("How big is it?", data_url())])
        assert reply.choices[0].message.content == "64 by 48" and reply.choices[0].finish_reason == "stop"
        facts = reply.model_extra["t3edge"]  # type: ignore[index]
        assert facts["ended"] == "final_answer" and facts["steps"] == 1
        saved = httpx.get(f"{url}/trajectories/{facts['trajectory_id']}").json()
        assert saved["steps"][0]["observation"] == "size (64, 48)\n" and saved["task"]["attachments"][0]["kind"] == "image"

        chunks = list(client.chat.completions.create(model="tiny", stream=True,
                                                     messages=[image_message("And this one?", data_url((30, 20)))]))
        events = [c.model_extra["t3edge"]["event"] for c in chunks if c.model_extra and "event" in c.model_extra.get("t3edge", {})]
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert events[:2] == ["code", "observation"] and "final_answer" in events
        assert "```py" in text and "size (30, 20)" in text and text.endswith("Answer: 30 by 20")
        last = chunks[-1]
        assert last.choices[0].finish_reason == "stop" and last.model_extra["t3edge"]["chat_id"] != facts["chat_id"]  # type: ignore[index]
        assert len(store.list()) == 2


def test_a_follow_up_continues_the_conversation(tmp_path: Path) -> None:
    with serving(ReplayBackend([COUNT, answer("one red"), answer("two")]), tmp_path) as (url, store):
        client = openai.OpenAI(base_url=url, api_key="none")
        first = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "How many cats?"}])
        said = first.choices[0].message.content or ""
        second = client.chat.completions.create(model="tiny", messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "How many cats?"}, {"role": "assistant", "content": said},
            {"role": "user", "content": "How many are red?"}])
        a, b = first.model_extra["t3edge"], second.model_extra["t3edge"]  # type: ignore[index]
        assert b["chat_id"] == a["chat_id"] and "notice" not in b
        assert store.trajectory(b["trajectory_id"]).continues == [a["trajectory_id"]]
        # a history the server never answered starts a new chat, and says so
        other = client.chat.completions.create(model="tiny", messages=[
            {"role": "user", "content": "How many dogs?"}, {"role": "assistant", "content": "five"},
            {"role": "user", "content": "And cats?"}])
        assert other.model_extra["t3edge"]["chat_id"] != a["chat_id"]  # type: ignore[index]
        assert "match no saved chat" in other.model_extra["t3edge"]["notice"]  # type: ignore[index]


def test_a_follow_up_the_model_cannot_take_is_refused_clearly(tmp_path: Path) -> None:
    backend = ReplayBackend([LOOK, answer("no")])
    with serving(backend, tmp_path) as (url, _):
        client = openai.OpenAI(base_url=url, api_key="none")
        first = client.chat.completions.create(model="tiny", messages=[image_message("How big?", data_url())])
        backend.supports_images = False  # as if the server now ran a text-only model
        chat_id = first.model_extra["t3edge"]["chat_id"]  # type: ignore[index]
        with pytest.raises(openai.BadRequestError, match="text-only model and the chat showed images"):
            client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "And?"}],
                                           extra_body={"t3edge_chat": chat_id})
        with pytest.raises(openai.APIError, match="text-only model and the chat showed images"):
            list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "And?"}],
                                                extra_body={"t3edge_chat": chat_id}, stream=True))
        with pytest.raises(openai.NotFoundError, match="no chat or run"):
            client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "And?"}],
                                           extra_body={"t3edge_chat": "nope"})


def test_plain_generation_by_model_suffix_or_flag(tmp_path: Path) -> None:
    with serving(ReplayBackend(["Paris is the capital.", "Rome, of course.", "Bern."]), tmp_path) as (url, store):
        client = openai.OpenAI(base_url=url, api_key="none")
        assert [m.id for m in client.models.list().data] == ["tiny", "tiny:raw"]
        plain = client.chat.completions.create(model="tiny:raw", messages=[{"role": "user", "content": "Capital?"}])
        assert plain.choices[0].message.content == "Paris is the capital." and plain.usage and plain.usage.completion_tokens > 0
        streamed = client.chat.completions.create(model="tiny:raw", stream=True,
                                                  messages=[{"role": "user", "content": "Of Italy?"}])
        assert "".join(c.choices[0].delta.content or "" for c in streamed) == "Rome, of course."
        flagged = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Swiss?"}],
                                                 extra_body={"t3edge_agent": False})
        assert flagged.choices[0].message.content == "Bern." and store.list() == []


def test_a_plain_generation_cut_at_the_time_limit_is_an_error_not_a_short_answer(tmp_path: Path) -> None:
    from t3edge.backends.base import GenerationConfig, Message
    from t3edge.errors import BackendError
    from t3edge.loading import load_backend

    slow = " ".join(["word"] * 400)  # 400 words at 10 ms each: past the 1 s limit
    with serving(ReplayBackend([slow, "Bern."], delay_s=0.01), tmp_path, max_run_s=1.0) as (url, _):
        client = load_backend(url + "#tiny:raw")
        with pytest.raises(BackendError, match="stopped before it finished"):
            client.generate([Message("user", "Talk.")], GenerationConfig(max_tokens=1000))
        assert client.generate([Message("user", "Swiss?")], GenerationConfig()).text == "Bern."


def test_a_client_that_leaves_mid_run_cancels_it_and_the_next_request_is_served(tmp_path: Path) -> None:
    slow = " ".join(["thinking"] * 3000)  # 3000 words at 10 ms each: 30 s if nobody stops it
    backend = ReplayBackend([slow, answer("quick"), slow, answer("quick again")], delay_s=0.01)
    with serving(backend, tmp_path) as (url, store):
        body = {"model": "tiny", "messages": [{"role": "user", "content": "Think long."}], "stream": True}
        with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=30) as response:
            assert response.status_code == 200
            next(response.iter_lines())  # the first keep-alive: the run is under way; then leave
        start = time.monotonic()
        client = openai.OpenAI(base_url=url, api_key="none", timeout=30)
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Quick?"}])
        assert reply.choices[0].message.content == "quick" and time.monotonic() - start < 15
        (gone,) = [t for c in store.list() for t in store.runs(c.id) if t.task.query == "Think long."]
        assert gone.ended == "cancelled"
        # a non-streamed client that gives up is cancelled too
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{url}/chat/completions", json={**body, "stream": False,
                                                        "messages": [{"role": "user", "content": "Think again."}]},
                       timeout=1.5)
        again = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Quick?"}])
        assert again.choices[0].message.content == "quick again"


def test_bad_requests_get_clear_json_errors_and_the_server_stays_up(tmp_path: Path) -> None:
    with serving(ReplayBackend([answer("fine")]), tmp_path, api_key="secret", max_body_bytes=200_000) as (url, _):
        with pytest.raises(openai.AuthenticationError, match="valid API key"):
            openai.OpenAI(base_url=url, api_key="wrong").models.list()
        client = openai.OpenAI(base_url=url, api_key="secret")
        with pytest.raises(openai.APIStatusError, match="larger than the server's") as too_big:
            client.chat.completions.create(model="tiny", messages=[image_message("Big?", data_url((900, 900), noise=True))])
        assert too_big.value.status_code == 413
        auth = {"Authorization": "Bearer secret"}
        corrupt = {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}
        for body, status, message in [
            (b"{nope", 400, "the body is not valid JSON"),
            (json.dumps({"messages": []}).encode(), 400, "messages"),
            (json.dumps({"messages": [{"role": "user", "content": [corrupt, {"type": "text", "text": "What?"}]}]}).encode(),
             400, "cannot read image"),
            (json.dumps({"model": "tiny:raw", "messages": [{"role": "user", "content": [corrupt]}]}).encode(),
             400, "cannot read image"),
            (json.dumps({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "/etc/passwd"}}, {"type": "text", "text": "?"}]}]}).encode(),
             403, "may not read"),
            (json.dumps({"messages": [{"role": "assistant", "content": "hi"}]}).encode(), 400, "user's task"),
        ]:
            reply = httpx.post(f"{url}/chat/completions", content=body, headers=auth)
            assert reply.status_code == status and message in reply.json()["error"]["message"], reply.text
        assert httpx.get(f"{url}/trajectories/nope", headers=auth).status_code == 404
        assert httpx.get(f"{url}/nothing").json()["error"]["code"] == 404
        ok = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Still there?"}])
        assert ok.choices[0].message.content == "fine"


def test_the_command_refuses_a_public_address_without_a_key(tmp_path: Path) -> None:
    done = subprocess.run(["t3edge", "serve", "--host", "0.0.0.0", "--model", "replay:x"], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 1 and "give --api-key" in done.stderr


@pytest.mark.slow
def test_the_data_engine_runs_against_the_server_in_plain_mode(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    """`t3edge serve` (the command) on the tiny model feeds the synthesis engine: every request is
    answered (its random text is rejected as structured output, with counted reasons)."""
    from click.testing import CliRunner
    from synth_world import write_config

    from synth.ledger import Ledger
    from synth.store import RunStore
    from t3edge.cli import cli

    port = free_port()
    env = {**os.environ, "T3EDGE_DATA_DIR": str(tmp_path / "data")}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "t3edge", "serve", "--model", str(tiny_qwen2_vl),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/models", timeout=2)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.3)
        config = write_config(tmp_path / "synth.toml", url, None, api={"model": "tiny:raw", "timeout_s": 60.0,
                                                                       "max_retries": 1},
                              queries={"calls": 2, "per_call": 3, "max_tokens": 32})
        run = tmp_path / "run"
        result = CliRunner().invoke(cli, ["synth", "run", "--config", str(config), "--run", str(run)],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        usage = Ledger(run / "usage.jsonl").stages["queries"]
        assert usage.requests == 2 and usage.completion_tokens > 0 and not usage.failures
        assert {d.reason for d in RunStore(run).dropped()} <= {"malformed_json", "schema_mismatch"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
