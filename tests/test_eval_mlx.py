"""Evaluation with a real model: the tiny random Qwen2-VL through mlx-vlm runs, scores and reports
(GAIA with two items at once, taking turns with the one loaded model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from eval_datasets import make_gaia, make_gta
from t3edge.cli import cli

pytest.importorskip("mlx_vlm")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["gta", "gaia"])
def test_tiny_mlx_model_runs_scores_and_reports(which: str, tiny_qwen2_vl: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    config.mkdir()
    # short generations keep a random model quick; GTA's 14-tool prompt exceeds the tiny 4096 context
    (config / "agent.toml").write_text("[generation]\nmax_tokens = 24\n")
    (config / "models.toml").write_text("[backend]\ncontext_length = 16384\n")
    monkeypatch.setenv("T3EDGE_CONFIG_DIR", str(config))
    data = make_gta(tmp_path / "data") if which == "gta" else make_gaia(tmp_path / "data")
    out = tmp_path / "run"
    items = 1 if which == "gta" else 2
    result = CliRunner().invoke(cli, ["eval", which, "--data", str(data), "--model", str(tiny_qwen2_vl),
                                      "--out", str(out), "--limit", str(items), "--jobs", str(items),
                                      "--max-steps", "1", "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert ("2 at a time" in result.output) == (items == 2)
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == items
    for record in lines:
        steps = record["trajectory"]["steps"]
        assert record["trajectory"]["model"] == str(tiny_qwen2_vl) and steps
        assert steps[0]["tokens_in"] > 0 and steps[0]["tokens_out"] > 0  # the model really ran
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] == items and summary["complete"]
    assert (out / "report.md").is_file() and (out / "plot.png").stat().st_size > 1000
