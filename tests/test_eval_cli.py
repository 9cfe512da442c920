"""`t3edge eval` end to end with the real agent and a replayed script: known answers give known
scores; a SIGKILLed run resumes to the same results; shards merge to the single run; score, compare."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from eval_datasets import make_gaia, make_gta
from t3edge.cli import cli
from t3edge.eval.jobs import collect
from t3edge.eval.records import read_records, result_files


def _step(code: str) -> str:
    return f"Thought: next.\nCode:\n```py\n{code}\n```<end_action>"


def _bow(text: str) -> list[float]:
    vec = [0.0] * 64
    for word in text.lower().replace('"', " ").split():
        vec[sum(map(ord, word)) % 64] += 1.0
    return vec


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return max(dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))), 0.0)


class _Embeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/embeddings endpoint with bag-of-words vectors."""

    def log_message(self, *args: object) -> None:
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = {"object": "list", "model": body.get("model", "bow"), "usage": {"prompt_tokens": 0, "total_tokens": 0},
                "data": [{"object": "embedding", "index": i, "embedding": _bow(t)} for i, t in enumerate(texts)]}
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("evalcli")
    gta, gaia = make_gta(base / "gta"), make_gaia(base / "gaia")
    cat = str((gta / "image" / "cat.jpg").resolve())
    gta_script = base / "gta_script.jsonl"
    gta_script.write_text("".join(json.dumps(o) + "\n" for o in [
        _step('print(Calculator(expression="2+2"))'),
        _step(f'print(DrawBox(image="{cat}", bbox="(1, 2, 30, 40)", annotation="cat"))'),
        _step('final_answer("four apples, 5.5 dollars, red")'),
    ]))
    gaia_script = base / "gaia_script.jsonl"
    gaia_script.write_text(json.dumps(_step("final_answer(str(8 * 3))")) + "\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Embeddings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = base / "eval.toml"
    config.write_text(f'embedding_url = "http://127.0.0.1:{server.server_address[1]}/v1"\n'
                      'embedding_model = "bow"\nfsync = false\n')
    yield {"base": base, "gta": gta, "gaia": gaia, "gta_script": gta_script, "gaia_script": gaia_script,
           "config": config}
    server.shutdown()


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, ["eval", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def gta_args(env, out: Path, *extra: str) -> list[str]:
    return ["gta", "--data", str(env["gta"]), "--model", f"replay:{env['gta_script']}", "--out", str(out),
            "--config", str(env["config"]), "--no-progress", *extra]


def outcomes(*folders: Path) -> list[dict]:
    return [r.outcome() for r in collect(list(folders))[1]]


@pytest.fixture(scope="module")
def gta_run(env) -> Path:
    out = env["base"] / "gta-run"
    invoke(*gta_args(env, out))
    return out


@pytest.mark.slow
def test_gta_end_to_end_known_scores(env, gta_run: Path) -> None:
    summary = json.loads((gta_run / "summary.json").read_text())
    m = summary["metrics"]
    assert summary["finished"] == summary["total"] == 6 and summary["model"].startswith("replay:")
    assert summary["code_version"] and summary["config"]["max_steps"] == 8
    assert m["official"]["answer_acc_objective"] == pytest.approx(75.0)  # "25%" never matches
    assert m["t3agent"]["answer_acc"] == pytest.approx(75.0)
    answer = "four apples, 5.5 dollars, red"
    subjective = max(_cos(_bow(answer), _bow(r)) for r in ["A red car parked on a street", "A car on the road"])
    assert m["official"]["answer_acc"] == pytest.approx(100 * (3 + subjective) / 5)
    # the image query made DrawBox with the reference's exact arguments: similarity 1
    assert m["official"]["ans_plus_i"] == pytest.approx(100 * (3 + subjective + 1.0) / 6)
    f1 = m["official"]["tool_f1"]
    assert f1["perception"] == pytest.approx(0.0)
    assert f1["operation"] == pytest.approx(25.0, abs=1e-2)  # DrawBox found once, predicted 6 times
    assert f1["logic"] == pytest.approx(100 * 2 / 7, abs=1e-2)  # Calculator: P 1/6, R 1
    assert m["t3agent"]["tool_acc"] == pytest.approx(12.5)  # 1 positional match of 8 reference calls
    assert m["t3agent"]["code_exec"] == pytest.approx(100 * 13 / 18)  # DrawBox fails where cat.jpg isn't attached
    report = (gta_run / "report.md").read_text()
    assert "T3-Agent (lenient)" in report and "GTA official" in report and "53.85" in report
    assert (gta_run / "plot.png").read_bytes()[:4] == b"\x89PNG"
    records = read_records(result_files(gta_run))
    assert records[3].tool_calls[1].name == "DrawBox" and records[3].tool_calls[1].error is None
    assert records[0].trajectory is not None and records[0].trajectory.ended == "final_answer"


@pytest.mark.slow
def test_gta_killed_midway_resumes_to_identical_results(env, gta_run: Path) -> None:
    out = env["base"] / "gta-killed"
    command = [sys.executable, "-c", "from t3edge.cli import main; main()", "eval", *gta_args(env, out)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    while (not results.is_file() or results.read_bytes().count(b"\n") < 2) and child.poll() is None:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert 2 <= len(read_records([results])) < 6
    invoke(*gta_args(env, out))
    ids = [r.id for r in read_records([results])]
    assert sorted(ids) == ["0", "1", "2", "3", "4", "5"]  # none twice, none lost
    assert outcomes(out) == outcomes(gta_run)
    assert "no item changed" in invoke("compare", str(gta_run), str(out))


@pytest.mark.slow
def test_gta_shards_merge_to_the_single_run(env, gta_run: Path) -> None:
    a, b = env["base"] / "shard-a", env["base"] / "shard-b"
    out = invoke(*gta_args(env, a, "--shard", "0/2"))
    assert "merge" in out and not (a / "report.md").exists()
    invoke(*gta_args(env, b, "--shard", "1/2"))
    merged = env["base"] / "merged"
    invoke("merge", str(a), str(b), "--out", str(merged))
    assert outcomes(merged) == outcomes(gta_run)
    assert json.loads((merged / "summary.json").read_text())["metrics"] == \
        json.loads((gta_run / "summary.json").read_text())["metrics"]


@pytest.mark.slow
def test_gaia_end_to_end_and_rescoring_its_submission(env, tmp_path: Path) -> None:
    out = tmp_path / "gaia-run"
    invoke("gaia", "--data", str(env["gaia"]), "--model", f"replay:{env['gaia_script']}", "--out", str(out),
           "--no-progress", "--config", str(env["config"]))
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]["official"]
    assert m["accuracy"] == pytest.approx(20.0)  # "24" is right for the 3-spider question only
    assert m["levels"]["1"]["accuracy"] == pytest.approx(50.0) and m["levels"]["2"]["accuracy"] == 0.0
    assert summary["split"] == "validation"
    assert "16.97" in (out / "report.md").read_text()  # the paper's number beside ours
    submission = [json.loads(line) for line in (out / "submission.jsonl").read_text().splitlines()]
    assert [s["model_answer"] for s in submission] == ["24"] * 5 and "final_answer" in submission[0]["reasoning_trace"]
    per_item = tmp_path / "per-item.jsonl"
    scored = json.loads(invoke("score", "gaia", "--data", str(env["gaia"]), "--predictions",
                               str(out / "submission.jsonl"), "--per-item", str(per_item), "--json"))
    assert scored["metrics"]["official"] == m
    lines = [json.loads(line) for line in per_item.read_text().splitlines()]
    assert [(x["id"], x["verdict"]["correct"]) for x in lines][:2] == [("t-num", True), ("t-list", False)]


def test_score_gta_predictions_from_elsewhere(env, tmp_path: Path) -> None:
    predictions = tmp_path / "preds.json"
    predictions.write_text(json.dumps({"0": "4", "1": "dark red", "4": "25%", "5": "$5 USD", "2": None}))
    per_item = tmp_path / "items.jsonl"
    result = json.loads(invoke("score", "gta", "--data", str(env["gta"]), "--predictions", str(predictions),
                               "--per-item", str(per_item), "--json"))
    m = result["metrics"]
    assert m["official"]["answer_acc_objective"] == pytest.approx(50.0)  # "4" and "$5 USD" ("5" matches)
    assert m["t3agent"]["answer_acc"] == pytest.approx(100.0)  # lenient: blacklist ignored, "25%" found
    assert m["official"]["tool_f1"]["perception"] is None  # no trajectories: no tool metrics
    assert result["missing"] == 1  # item 3 had no prediction
    verdicts = {json.loads(x)["id"]: json.loads(x)["verdict"] for x in per_item.read_text().splitlines()}
    assert verdicts["1"]["official"] == 0.0 and verdicts["1"]["lenient"] is True


@pytest.mark.parametrize(("args", "needle"), [
    (["gta", "--data", "/nonexistent", "--model", "replay:x"], "not found"),
    (["gta", "--data", "{gta}", "--model", "replay:x", "--shard", "2/2"], "shard"),
    (["score", "gta", "--data", "{gta}", "--predictions", "{bad}"], "JSON object"),
    (["score", "gta", "--data", "{gta}", "--predictions", "{unknown}"], "not in the dataset"),
    (["score", "gaia", "--data", "{gaia}", "--predictions", "{bad}"], "task_id"),
    (["gaia", "--model", "replay:x"], "gated"),
])
def test_errors_are_one_line(env, tmp_path: Path, args: list[str], needle: str, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    bad = tmp_path / "bad.json"
    bad.write_text('["not", "an object"]\n')
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"999": "x"}')
    filled = [a.format(gta=env["gta"], gaia=env["gaia"], bad=bad, unknown=unknown) for a in args]
    result = CliRunner().invoke(cli, ["eval", *filled])
    assert result.exit_code != 0
    line = result.output.strip()
    assert needle in line and "Traceback" not in line, line
