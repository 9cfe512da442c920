"""The data engine end to end over real HTTP (scripted OpenAI-compatible server with injected
429s, 500s, hangs and malformed bodies): records, rejections, stats, SIGKILL + resume, budget."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from synth_world import DROPPED, KEPT, World, ids, make_pool, write_config

from synth.image_pool import index_pool, read_index
from synth.items import STAGES
from synth.stats import collect
from synth.store import RunStore
from t3edge.cli import cli
from t3edge.scripted_server import ScriptedOpenAIServer
from t3edge.jsonl import iter_jsonl
from t3edge.mmtraj import from_mmtraj

pytestmark = pytest.mark.slow


def _synth(*args: str) -> str:
    result = CliRunner().invoke(cli, ["synth", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_pool(tmp_path_factory.mktemp("pool"))
    added, failed = asyncio.run(index_pool(folder, captions=folder / "captions.jsonl", caption_with=None))
    assert (added, failed) == (3, 0)
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, pool: Path) -> tuple[Path, World]:
    """One uninterrupted run against the faulty scripted server."""
    base = tmp_path_factory.mktemp("reference")
    world = World()
    with ScriptedOpenAIServer(world) as server:
        config = write_config(base / "synth.toml", server.url, pool)
        _synth("run", "--config", str(config), "--run", str(base / "run"))
    return base / "run", world


def _export(run: Path) -> list[dict]:
    out = run / "export"
    return [r for name in ("train.jsonl", "valid.jsonl") for r in iter_jsonl(out / name)]


def test_run_keeps_the_right_tasks_and_drops_the_rest_with_reasons(reference: tuple[Path, World]) -> None:
    run, world = reference
    names = ids()
    records = _export(run)
    assert sorted(r["id"] for r in records) == sorted(names[n] for n in KEPT)

    dropped = {(d.id, d.stage, d.reason) for d in RunStore(run).dropped()}
    for name, (stage, reason) in DROPPED.items():
        assert (names[name], stage, reason) in dropped, name
    assert len(dropped) == len(DROPPED)

    # every injected fault was met and retried; the repaired reply was counted
    stats = collect(run)
    assert stats.usage["file_content"].retries == {"http_429": 1, "http_500": 3}
    assert stats.usage["file_content"].failures == {"http_500": 1}
    assert stats.usage["verify_query"].retries == {"http_500": 1}
    assert stats.usage["trajectories"].retries == {"timeout": 1}
    assert stats.usage["verify_traj"].retries == {"bad_response": 1}
    assert stats.usage["queries"].repairs == {"trailing_comma": 1}
    assert stats.total_cost > 0
    assert stats.tools == {"inspect_file_as_text": 1, "visualizer": 1}
    assert stats.steps == {2: 2}
    assert stats.file_sources == {"generated": 3, "retrieved": 2}
    assert stats.passed["filter"] == 2
    assert stats.reasons["file_content"] == {"api_error": 1, "malformed_json": 1, "unsupported_file_type": 1}


def test_exported_records_load_in_the_importer_and_training_prep(reference: tuple[Path, World]) -> None:
    from t3edge.train.data import load_trajectories

    run, _ = reference
    out = run / "export"
    by_id = {r["id"]: r for r in _export(run)}
    cat = by_id[ids()["cat"]]
    assert cat["image"] == f"files/{cat['id']}/file_1.png" and (out / cat["image"]).is_file()
    assert cat["conversations"][0]["content"].startswith("<image>\nTask: Looking at the photo")
    assert json.loads(cat["traj_verification"])["correct"] == "yes"
    assert str(run) not in json.dumps(list(by_id.values()))  # every path is relative to the export

    traj = from_mmtraj(cat, root=out)
    assert traj.final_answer == "red" and Path(traj.task.attachments[0].path).is_file()
    assert [s.code for s in traj.steps][1] == 'final_answer("red")'
    loaded = [t for name in ("train.jsonl", "valid.jsonl") if (out / name).stat().st_size
              for t in load_trajectories(out / name)]
    assert sorted(t.task.id for t in loaded) == sorted(by_id)


def test_exported_records_become_training_samples(reference: tuple[Path, World], tiny_qwen2_vl: Path) -> None:
    from mlx_vlm import load

    from t3edge.images import ImagePolicy
    from t3edge.train.data import SampleEncoder, load_trajectories, prepare

    run, _ = reference
    out = run / "export"
    trajs = [t for name in ("train.jsonl", "valid.jsonl") if (out / name).stat().st_size
             for t in load_trajectories(out / name)]
    model, processor = load(str(tiny_qwen2_vl))
    encoder = SampleEncoder(processor, model.config, ImagePolicy.for_model(tiny_qwen2_vl), image_root=out)
    prepared = prepare(trajs, encoder, max_length=100_000)
    assert not prepared.dropped_unreadable and prepared.dropped_no_target == 0
    assert len(prepared.train) + len(prepared.valid) == len(KEPT)
    assert prepared.supervised_tokens > 0


def test_stats_command_prints_tables_and_writes_a_png(reference: tuple[Path, World], tmp_path: Path) -> None:
    run, _ = reference
    output = _synth("stats", str(run), "--png", str(tmp_path / "s.png"))
    assert "near_duplicate" in output and "trajectory_rejected" in output
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads(_synth("stats", str(run), "--json", "--png", str(tmp_path / "t.png")))
    assert data["passed"]["queries"] == 8


def test_rerunning_a_finished_run_sends_nothing(reference: tuple[Path, World], pool: Path) -> None:
    run, _ = reference
    before = _export(run)
    world = World(faults=False)
    with ScriptedOpenAIServer(world) as server:
        config = write_config(run.parent / "again.toml", server.url, pool)
        _synth("run", "--config", str(config), "--run", str(run))
    # only the item that failed transiently (the API gave up on it) is tried again
    assert set(world.calls) == {("file_content", "memo")}
    assert _export(run) == before


def _finished(run: Path) -> dict[str, set[str]]:
    store = RunStore(run)
    return {stage: store.done_ids(stage) for stage in ("query_batches", *STAGES)}


def test_sigkill_mid_run_then_resume_gives_the_same_dataset(
        reference: tuple[Path, World], pool: Path, tmp_path: Path) -> None:
    ref_run, _ = reference
    world = World()
    run = tmp_path / "run"
    with ScriptedOpenAIServer(world) as server:
        config = write_config(tmp_path / "synth.toml", server.url, pool)
        cmd = [sys.executable, "-c", "from t3edge.cli import main; main()", "synth", "run",
               "--config", str(config), "--run", str(run)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        trajectories = run / "stages" / "trajectories.jsonl"
        while proc.poll() is None and not (trajectories.is_file() and trajectories.stat().st_size):
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        finished = _finished(run)
        assert finished["trajectories"] and not (run / "export").exists()
        # items flow: when it was killed, several stages held some but not all of their items
        complete = _finished(ref_run)
        partial = [s for s in STAGES if finished[s] and finished[s] < complete[s]]
        assert len(partial) >= 2, {s: (len(finished[s]), len(complete[s])) for s in STAGES}

        resumed_from = len(world.calls)
        _synth("run", "--config", str(config), "--run", str(run))
        names = ids()
        for stage, name in world.calls[resumed_from:]:
            if stage == "queries":
                assert "batch-0000" not in finished["query_batches"]
            elif name is not None and stage in finished:
                assert names[name] not in finished[stage], f"{name} was redone at {stage}"
    assert _export(run) == _export(ref_run)
    for stage in STAGES:
        written = [r["id"] for r in RunStore(run).records(stage)]
        assert len(written) == len(set(written)), f"{stage} wrote an item twice"


def test_budget_cap_stops_cleanly_and_a_higher_cap_resumes(pool: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with ScriptedOpenAIServer(World(faults=False)) as server:
        config = write_config(tmp_path / "synth.toml", server.url, pool)
        output = _synth("run", "--config", str(config), "--run", str(run), "--budget", "0.002")
        assert "budget is reached" in output
        spent = collect(run).total_cost
        assert 0.002 <= spent < 0.01
        assert not (run / "export").exists()
        # items the budget stopped are not dropped: they wait for the next run
        assert {d.reason for d in RunStore(run).dropped()} <= {r for _, r in DROPPED.values()}
        _synth("run", "--config", str(config), "--run", str(run), "--budget", "1")
    assert sorted(r["id"] for r in _export(run)) == sorted(ids()[n] for n in KEPT)


def test_index_images_by_model_captioning(tmp_path: Path) -> None:
    folder = make_pool(tmp_path / "pool")
    (folder / "captions.jsonl").unlink()

    def caption(request: dict) -> str:
        assert request["messages"][0]["content"][0]["type"] == "image_url"
        return "  a small   colourful test picture "

    with ScriptedOpenAIServer(caption) as server:
        output = _synth("index-images", str(folder), "--base-url", server.url, "--model", "m")
        assert "indexed 3 new images" in output
        _synth("index-images", str(folder), "--base-url", server.url, "--model", "m")
        assert len(server.requests) == 3
    assert {e.caption for e in read_index(folder)} == {"a small colourful test picture"}
