"""`t3edge eval tasks` on a replayed model: results, report and metrics (all tasks and the
held-out families alone), resuming a run cut short, scoring predictions made elsewhere."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from t3edge.cli import cli
from t3edge.eval.jobs import collect
from t3edge.eval.records import read_records, result_files
from t3edge.scripted_server import ScriptedOpenAIServer
from t3edge.tasks import load_tasks, make_tasks

FAMILIES = ["csv_total", "json_field", "ocr_code", "face_count"]  # two of them held out


def _step(code: str, thought: str = "next.") -> str:
    return f"Thought: {thought}\nCode:\n```py\n{code}\n```<end_action>"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("tasks-eval")
    data = base / "tasks"
    records = make_tasks(data, "test", 4, seed=2, families=FAMILIES, verify=False)
    csv, _, ocr, _ = records
    image = Path(ocr.files[0]).name
    # every task replays: a parse error, an ocr call on the task's image name (fails where it is
    # not attached), then csv_total's answer as the final answer
    script = base / "script.jsonl"
    script.write_text("".join(json.dumps(o) + "\n" for o in [
        "I think the answer is obvious.",
        _step(f'print(ocr(image_path="{image}"))'),
        _step(f"final_answer({csv.answer!r})"),
    ]))
    return {"base": base, "data": data, "records": records, "script": script}


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def run_args(env: dict, out: Path, *extra: str) -> list[str]:
    return ["eval", "tasks", "--data", str(env["data"]), "--model", f"replay:{env['script']}", "--out", str(out),
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def run(env: dict) -> Path:
    out = env["base"] / "run"
    output = invoke(*run_args(env, out))
    assert "all.answer_acc" in output and "held_out.answer_acc" in output and "report:" in output
    return out


def test_results_report_and_metrics(env: dict, run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert summary["benchmark"] == "tasks" and summary["finished"] == summary["total"] == 4
    assert summary["split"] == "test"
    m = summary["metrics"]
    assert m["counts"]["items"] == 4 and m["counts"]["held_out"] == 2
    assert m["all"]["answer_acc"] == pytest.approx(25.0)  # only csv_total's own answer is right
    assert m["held_out"]["answer_acc"] == pytest.approx(0.0)
    assert m["train_families"]["answer_acc"] == pytest.approx(50.0)
    assert m["all"]["final_answer_rate"] == pytest.approx(100.0)
    assert m["all"]["well_formed_steps"] == pytest.approx(100 * 2 / 3)  # one parse error in three steps
    assert m["all"]["code_exec"] == pytest.approx(100 * 5 / 8)  # ocr fails on 3 of the 4 tasks
    # tool choice: of the tasks that expect tools (ocr_code: ocr, face_count: facedetection), only
    # ocr_code called what it expects
    assert m["counts"]["tool_tasks"] == 2 and m["all"]["tool_choice"] == pytest.approx(50.0)
    assert m["held_out"]["tool_choice"] == pytest.approx(0.0)
    assert m["families"]["csv_total"]["answer_acc"] == pytest.approx(100.0)
    assert m["families"]["face_count"]["held_out"] is True
    report = (run / "report.md").read_text()
    assert "held-out families (2)" in report and "| AnsAcc | 25.00 | 0.00 | 50.00 |" in report
    assert "tool choice" in report and "| face_count | yes | 1 |" in report
    assert (run / "plot.png").read_bytes()[:4] == b"\x89PNG"
    records = read_records(result_files(run))
    assert [r.id for r in records] == [r.id for r in env["records"]]
    assert records[0].verdict.correct and records[2].verdict.tools_ok is True
    assert records[0].trajectory.steps[0].kind == "parse_error"
    run_info = json.loads((run / "run.json").read_text())
    assert run_info["benchmark"] == "tasks" and run_info["data_sha256"]


def test_a_run_cut_short_resumes_to_the_same_results(env: dict, run: Path) -> None:
    out = env["base"] / "cut"
    invoke(*run_args(env, out))
    results = out / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed while writing item 3
    (out / "summary.json").unlink()
    invoke(*run_args(env, out))
    assert [r.outcome() for r in collect([out])[1]] == [r.outcome() for r in collect([run])[1]]
    assert (out / "summary.json").is_file()
    before = results.read_bytes()
    invoke(*run_args(env, out))  # finished: nothing runs again
    assert results.read_bytes() == before


def test_a_folder_of_another_run_is_refused_and_data_is_required(env: dict, run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, run_args(env, run, "--limit", "2"))
    assert result.exit_code == 1 and "holds another run" in result.output
    result = CliRunner().invoke(cli, ["eval", "tasks", "--model", f"replay:{env['script']}", "--no-progress"])
    assert result.exit_code == 1 and "--data" in result.output
    result = CliRunner().invoke(cli, ["eval", "tasks", "--data", str(tmp_path), "--model",
                                      f"replay:{env['script']}", "--no-progress"])
    assert result.exit_code == 1 and "not a task folder" in result.output


def test_broken_records_are_left_out_with_a_warning(env: dict, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "tasks"
    shutil.copytree(env["data"], data)
    first = load_tasks(data)[0][0]
    (data / first.files[0]).unlink()
    with pytest.warns(UserWarning, match="1 task record"):
        out = invoke(*["eval", "tasks", "--data", str(data), "--model", f"replay:{env['script']}",
                       "--out", str(tmp_path / "run"), "--no-progress"])
    assert "TASKS: 3 items" in out


def test_score_predictions_made_elsewhere(env: dict, tmp_path: Path) -> None:
    records = env["records"]
    predictions = tmp_path / "preds.json"
    predictions.write_text(json.dumps({r.id: r.answer for r in records[:3]}))
    output = invoke("eval", "score", "tasks", "--data", str(env["data"]), "--predictions", str(predictions), "--json")
    result = json.loads(output)
    assert result["metrics"]["all"]["answer_acc"] == pytest.approx(75.0) and result["missing"] == 1
    assert result["metrics"]["all"]["tool_choice"] is None  # no run, no calls recorded


def test_items_run_at_once_against_a_server_give_the_results_of_one_at_a_time(env: dict, run: Path) -> None:
    """The same script served over real HTTP: a server takes several items' calls at once, and
    the records equal the replayed run's."""
    script = [json.loads(line) for line in env["script"].read_text().splitlines()]
    lock, active, most = threading.Lock(), [0], [0]

    def respond(request: dict) -> str:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
        return script[sum(m["role"] == "assistant" for m in request["messages"])]

    with ScriptedOpenAIServer(respond) as server:
        out = env["base"] / "served"
        output = invoke("eval", "tasks", "--data", str(env["data"]), "--model", server.url, "--out", str(out),
                        "--jobs", "4", "--no-progress")
    assert "4 at a time" in output and most[0] > 1
    assert [r.outcome() for r in collect([out])[1]] == [r.outcome() for r in collect([run])[1]]
    workspaces = {r.trajectory.workspace for r in collect([out])[1]}
    assert len(workspaces) == 4  # each item in its own folder


def test_items_at_once_by_default_only_against_a_server_on_another_machine(env: dict, tmp_path: Path) -> None:
    from t3edge.eval.config import EvalConfig
    from t3edge.eval.jobs import prepare_run

    def jobs(model: str, cfg: EvalConfig = EvalConfig()) -> int:
        return prepare_run("tasks", model, cfg, data=env["data"], out=tmp_path / "run").jobs

    assert jobs("http://10.1.2.3:8080/v1") == 4  # an API elsewhere takes calls together
    for here in ("127.0.0.1", "localhost", "0.0.0.0", "[::1]", socket.gethostname()):
        assert jobs(f"http://{here}:8080/v1") == 1, here  # a server sharing this machine's cores
    assert jobs(f"replay:{env['script']}") == 1
    assert jobs("http://127.0.0.1:8080/v1", EvalConfig(jobs=3)) == 3
