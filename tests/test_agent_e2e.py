"""End to end: the agent on the tiny random models through the real backends, and `t3edge run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from t3edge.agent import Agent, AgentConfig
from t3edge.agent.events import RunFinished, StepStarted
from t3edge.loading import load_backend
from t3edge.backends.base import GenerationConfig
from t3edge.cli import cli
from t3edge.protocol import format_step
from t3edge.tools import ToolContext, default_tools
from t3edge.trajectory import Attachment, Task, Trajectory, read_trajectories

ENDINGS = {"final_answer", "step_limit", "error_limit", "context_full"}


def _check_run(backend, image: Path, tmp_path: Path) -> Trajectory:
    config = AgentConfig(max_steps=2, max_errors=2,
                         generation=GenerationConfig(max_tokens=24, temperature=0.0))
    agent = Agent(backend, config=config, workspace=tmp_path / "ws")
    task = Task(id="tiny", query="Describe the image.", attachments=[Attachment.from_path(image)])
    events = list(agent.run(task))
    traj = events[-1].trajectory
    assert isinstance(events[-1], RunFinished)
    # whatever the random model writes, the run ends within its limits, well formed
    assert traj.ended in ENDINGS
    assert 1 <= len(traj.steps) <= config.max_steps + 1
    assert sum(isinstance(e, StepStarted) for e in events) == len(traj.steps)
    assert all(s.feedback is not None for s in traj.steps[:-1])
    assert traj.steps[0].tokens_in > 0 and traj.steps[0].tokens_out > 0
    assert Trajectory.model_validate_json(traj.model_dump_json()) == traj
    return traj


@pytest.mark.slow
def test_agent_runs_on_the_tiny_mlx_model(tiny_qwen2_vl: Path, test_image: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlx_vlm")
    backend = load_backend(str(tiny_qwen2_vl))
    try:
        traj = _check_run(backend, test_image, tmp_path)
        ctx = ToolContext(workspace=tmp_path / "tools", backend=backend, allowed_files=[test_image],
                          generation=GenerationConfig(max_tokens=8))
        answer = default_tools().call("visualizer", [], {"question": "What is it?",
                                                         "image_path": str(test_image)}, ctx=ctx)
        boxes = default_tools().call("objectlocation", [], {"object": "square", "image_path": str(test_image)},
                                     ctx=ctx)
    finally:
        backend.close()
    assert isinstance(answer, str) and isinstance(boxes, list)
    assert all(len(b) == 4 and 0 <= b[0] <= b[2] <= 224 for b in boxes)
    assert traj.backend == backend.name
    if len(traj.steps) > 1:
        assert traj.steps[1].tokens_cached > 0  # the append-only conversation reuses the prefix


@pytest.mark.slow
def test_agent_runs_on_the_tiny_gguf_model(tiny_qwen2_vl: Path, test_image: Path,
                                           tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    converters = pytest.importorskip("converters.hf_to_gguf")
    pair = converters.convert_to_gguf(tiny_qwen2_vl, tmp_path_factory.mktemp("agent-gguf"), "f32")
    backend = load_backend(str(pair.model))
    try:
        _check_run(backend, test_image, tmp_path)
    finally:
        backend.close()


def test_cli_run_streams_steps_and_saves_the_trajectory(tmp_path: Path, test_image: Path) -> None:
    script = tmp_path / "script.jsonl"
    outputs = [format_step("Measure.", "from PIL import Image\nprint(Image.open('photo.png').size)"),
               format_step("Answer.", "final_answer({'width': 224})")]
    script.write_text("".join(json.dumps(o) + "\n" for o in outputs))
    out = tmp_path / "runs.jsonl"
    result = CliRunner().invoke(cli, ["run", "How wide is it?", "--file", str(test_image),
                                      "--model", f"replay:{script}", "--out", str(out),
                                      "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    assert "(224, 224)" in result.output and '"width": 224' in result.output
    flat = result.output.replace("\n", "")
    assert "trajectory saved to " in flat and "chats.db (chat " in flat and f" and {out}" in flat
    [traj] = list(read_trajectories(out))
    assert traj.final_answer == {"width": 224} and traj.ended == "final_answer"
    assert traj.task.attachments[0].sha256

    as_json = CliRunner().invoke(cli, ["run", "How wide is it?", "--file", str(test_image), "--json",
                                       "--model", f"replay:{script}", "--out", str(out)])
    assert as_json.exit_code == 0, as_json.output
    printed = Trajectory.model_validate_json(as_json.stdout[as_json.stdout.index("{"):])
    assert printed.final_answer == {"width": 224} and len(list(read_trajectories(out))) == 2


def test_cli_run_reports_a_missing_file_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", "q", "--file", str(tmp_path / "nope.png"), "--model", "replay:x"])
    assert result.exit_code == 1 and "attachment not found" in result.output
