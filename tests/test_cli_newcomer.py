"""What a new user runs into first: bad input, interrupted runs and unwritable places, each
through the real `t3edge` command (subprocesses). Every failure is one line, a non-zero exit and
no traceback; nothing finished is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from t3edge.protocol import format_step


def t3(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["t3edge", *args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


def interrupted(args: list[str], started: Callable[[], bool]) -> tuple[int, str, str]:
    """Run `t3edge ARGS`, press Ctrl-C once `started()` holds, and return (status, stdout, stderr)."""
    proc = subprocess.Popen(["t3edge", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)  # noqa: PLW1509 - a shell may start us with SIGINT ignored
    deadline = time.monotonic() + 120
    while not started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stdout + stderr, stderr
    return proc.returncode, stdout, stderr


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def one_error_line(result: subprocess.CompletedProcess[str], start: str, code: int = 1) -> str:
    """The single `error: ...` line of a failed command."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(start), result.stderr
    return errors[0]


# model code that marks that it started, then runs until stopped
SLOW = format_step("Count.", "open('started.txt', 'w').write('yes')\nx = 0\nfor i in range(10**9):\n    x += i")


def script(path: Path, *outputs: str) -> str:
    path.write_text("".join(json.dumps(o) + "\n" for o in outputs))
    return f"replay:{path}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("newcomer") / "tiny"
    assert t3("dev", "tiny-model", str(folder)).returncode == 0
    return folder


def test_config_show_titles_each_section() -> None:
    shown = t3("config", "show", "eval")
    assert shown.returncode == 0 and shown.stdout.lstrip().startswith("[eval]")


def test_a_misspelt_setting_is_reported_not_ignored(tmp_path: Path) -> None:
    (tmp_path / "typo.toml").write_text("[generation]\nmax_token = 3\n")
    result = t3("run", "q", "--model", "replay:none.txt", "--config", "typo.toml", cwd=tmp_path)
    line = one_error_line(result, "error: unknown setting agent.generation.max_token")
    assert "typo.toml" in line


def test_run_refuses_a_corrupt_image_before_loading_a_model(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = t3("run", "q", "--file", "broken.png", "--model", "no-such-model", cwd=tmp_path)
    one_error_line(result, f"error: cannot read image {tmp_path / 'broken.png'}")


def test_run_fails_with_one_line_when_the_model_fails_and_keeps_the_trajectory(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text("[backend]\nmax_retries = 0\ntimeout_s = 2.0\n")
    out = tmp_path / "runs.jsonl"
    result = subprocess.run(
        ["t3edge", "run", "q", "--model", "http://127.0.0.1:9/v1#m", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "T3EDGE_CONFIG_DIR": str(tmp_path)},
    )
    one_error_line(result, "error: http://127.0.0.1:9/v1: APIConnectionError")
    [line] = out.read_text().splitlines()
    assert json.loads(line)["ended"] == "backend_error"


def test_ctrl_c_stops_a_run_and_saves_it_as_cancelled(tmp_path: Path) -> None:
    out, workspace = tmp_path / "runs.jsonl", tmp_path / "ws"
    status, stdout, stderr = interrupted(["run", "q", "--model", script(tmp_path / "s.jsonl", SLOW), "--out", str(out),
                                          "--workspace", str(workspace)], (workspace / "started.txt").exists)
    assert status == 130, stdout + stderr
    [line] = out.read_text().splitlines()
    assert json.loads(line)["ended"] == "cancelled"


def test_run_checks_its_output_file_before_running(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("a file, not a folder")
    done = format_step("Done.", "final_answer('ok')")
    result = t3("run", "q", "--model", script(tmp_path / "s.jsonl", done), "--out", "plain/runs.jsonl",
                cwd=tmp_path)
    one_error_line(result, "error: cannot write trajectories to plain/runs.jsonl")
    assert "step 0" not in result.stdout


def test_a_model_folder_without_weights_or_with_corrupt_weights(tiny: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no weights"
    empty.mkdir()
    (empty / "config.json").write_text((tiny / "config.json").read_text())
    one_error_line(t3("generate", "--model", str(empty), "hi"),
                   f"error: model folder {empty} has no .safetensors weights")
    broken = tmp_path / "brökén"
    broken.mkdir()
    for f in tiny.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = one_error_line(t3("generate", "--model", str(broken), "hi"), f"error: cannot load the MLX model in {broken}")
    assert "t3edge convert inspect" in line
    line = one_error_line(t3("train", "prepare", str(tmp_path / "no weights" / "config.json"), "--model", str(broken)),
                          f"error: cannot load {broken} with mlx-vlm")
    assert "t3edge convert inspect" in line


def test_train_without_data_names_the_flag(tiny: Path) -> None:
    one_error_line(t3("train", "--model", str(tiny), "--iters", "1"), "error: no training data given (pass --data")


def gta_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    item = {"tools": [], "files": [], "gt_answer": {"whitelist": [["42"]], "blacklist": None},
            "dialogs": [{"role": "user", "content": "What is 6 times 7?"}, {"role": "assistant", "content": "42"}]}
    (root / "dataset.json").write_text(json.dumps({"0": item, "1": item, "2": item}))
    (root / "toolmeta.json").write_text("{}")
    return root


def test_eval_checks_the_model_before_making_the_run_folder(tmp_path: Path) -> None:
    data = gta_folder(tmp_path / "gta data")
    result = t3("eval", "gta", "--data", str(data), "--model", "replay:missing.txt", "--out", "run", cwd=tmp_path)
    one_error_line(result, "error: replay file not found: missing.txt")
    assert not (tmp_path / "run").exists()


def test_eval_does_not_record_items_the_model_failed_on(tmp_path: Path) -> None:
    data = gta_folder(tmp_path / "gta")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = t3("eval", "gta", "--data", str(data), "--model", f"replay:{empty}", "--out", "run", "--no-progress",
                cwd=tmp_path)
    one_error_line(result, "error: 3 items in a row failed")
    assert (tmp_path / "run" / "results.jsonl").read_text() == ""


@pytest.mark.parametrize("metadata, message", [
    ("", "error: the GAIA data in gaia has no items"),
    ('{"task_id": 1\n', "error: "),
])
def test_eval_refuses_an_empty_or_broken_gaia_metadata_file(metadata: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "gaia").mkdir()
    (tmp_path / "gaia" / "metadata.jsonl").write_text(metadata)
    model = script(tmp_path / "s.jsonl", format_step("Done.", "final_answer('4')"))
    line = one_error_line(t3("eval", "gaia", "--data", "gaia", "--model", model, cwd=tmp_path), message)
    if metadata:
        assert "metadata.jsonl:1: unreadable line" in line and "skipped" not in line


def test_eval_split_must_be_a_gaia_split(tmp_path: Path) -> None:
    result = t3("eval", "gaia", "--data", ".", "--split", "bogus", cwd=tmp_path)
    assert result.returncode == 2 and "'bogus' is not one of 'validation', 'test'" in result.stderr


def test_an_empty_task_and_a_used_folder_are_refused(tiny: Path) -> None:
    one_error_line(t3("run", "  ", "--model", "replay:none.txt"), "error: the task is empty")
    one_error_line(t3("dev", "tiny-model", str(tiny)), f"error: {tiny} exists and is not empty")


def test_eval_data_given_as_a_file(tmp_path: Path) -> None:
    data = gta_folder(tmp_path / "gta")
    model = script(tmp_path / "s.jsonl", format_step("Done.", "final_answer('42')"))
    one_error_line(t3("eval", "gta", "--data", model[len("replay:"):], "--model", model),
                   f"error: {tmp_path / 's.jsonl'} is a file, not the GTA data folder")
    ran = t3("eval", "gta", "--data", str(data / "dataset.json"), "--model", model, "--out", str(tmp_path / "run"),
             "--no-progress")
    assert ran.returncode == 0 and len((tmp_path / "run" / "results.jsonl").read_text().splitlines()) == 3
    one_error_line(t3("run", "q", "--model", f"replay:{tmp_path}"), f"error: replay file {tmp_path} is a folder")


def test_ctrl_c_in_training_saves_a_checkpoint_and_says_how_to_resume(tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "trajs.jsonl"
    done = format_step("Done.", "final_answer('ok')")
    assert t3("run", "q", "--model", script(tmp_path / "s.jsonl", done), "--out", str(data)).returncode == 0
    trajectory = json.loads(data.read_text())
    data.write_text(json.dumps({**trajectory, "system_prompt": "Answer with code."}) + "\n")  # short: fast updates
    run = tmp_path / "my run"
    metrics = run / "metrics.jsonl"
    # after the first update: MLX's CPU backend compiles its kernels then, through system(), which
    # ignores SIGINT while the compiler runs
    status, out, stderr = interrupted(["train", "--model", str(tiny), "--data", str(data), "--out", str(run),
                                       "--iters", "1000", "--no-progress"],
                                      lambda: metrics.exists() and metrics.read_text().count("\n") >= 1)
    assert status == 130, out + stderr
    assert f"t3edge train --out '{run}' --resume" in stderr
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert [c.name for c in (run / "checkpoints").iterdir()] == [f"step-{last:07d}"]  # no update is lost


def test_ctrl_c_in_an_evaluation_keeps_finished_items_and_the_rerun_continues(tmp_path: Path) -> None:
    data = gta_folder(tmp_path / "gta")
    model = script(tmp_path / "s.jsonl", SLOW)
    args = ["eval", "gta", "--data", str(data), "--model", model, "--out", str(tmp_path / "run"), "--no-progress"]
    status, _, stderr = interrupted(args, (tmp_path / "run" / "workspaces" / "0" / "started.txt").exists)
    assert status == 130, stderr
    assert "run the same command again to continue" in stderr
    script(tmp_path / "s.jsonl", format_step("Done.", "final_answer('42')"))
    assert t3(*args).returncode == 0
    ids = [json.loads(line)["id"] for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert ids == ["0", "1", "2"]


def test_fusing_and_converting_never_write_over_a_model(tiny: Path, tmp_path: Path) -> None:
    import numpy as np

    from converters.lora import LoraAdapter, write_mlx

    zeros = (np.zeros((2, 64), np.float32), np.zeros((64, 2), np.float32))
    adapter = write_mlx(LoraAdapter(rank=2, scale=1.0, layers={"model.layers.0.self_attn.q_proj": zeros}),
                        tmp_path / "adapter")
    weights = (tiny / "model.safetensors").read_bytes()
    one_error_line(t3("train", "fuse", str(adapter), "--model", str(tiny), "--out", str(tiny)),
                   f"error: {tiny} exists and is not empty")
    other = tmp_path / "other model"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"precious")
    one_error_line(t3("convert", "fuse", str(tiny), str(adapter), str(other)), f"error: {other} exists and is not empty")
    one_error_line(t3("convert", "lora", "to-peft", str(adapter), str(other)), f"error: {other} exists and is not empty")
    assert (tiny / "model.safetensors").read_bytes() == weights
    assert (other / "model.safetensors").read_bytes() == b"precious"
