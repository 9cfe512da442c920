"""The data engine against a real llama_cpp.server serving the tiny random model (fully offline):
the run completes, and the random output is rejected with counted reasons at each stage."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from llama_servers import llama_server as serve
from synth_world import make_pool, write_config

from synth.items import MadeFile, SynthItem
from synth.ledger import Ledger
from synth.store import RunStore
from t3edge.cli import cli
from t3edge.trajectory import Verdict

pytestmark = pytest.mark.slow
STRUCTURED_REJECTIONS = {"malformed_json", "schema_mismatch"}


@pytest.fixture(scope="module")
def llama_server(tiny_qwen2_vl: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("llama_cpp.server.app")
    from converters.hf_to_gguf import convert_to_gguf

    pair = convert_to_gguf(tiny_qwen2_vl, tmp_path_factory.mktemp("gguf"), "f32")
    with serve(["--model", str(pair.model), "--clip_model_path", str(pair.mmproj), "--chat_format", "mtmd",
                "--n_ctx", "16384"], tmp_path_factory.mktemp("log") / "server.log") as url:
        yield url


def _synth(*args: str) -> None:
    result = CliRunner().invoke(cli, ["synth", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _config(tmp_path: Path, url: str, pool: Path | None) -> Path:
    return write_config(tmp_path / "synth.toml", url, pool, api={"timeout_s": 60.0, "max_retries": 1},
                        queries={"calls": 2, "per_call": 3, "max_tokens": 64},
                        verify_query={"max_tokens": 64}, trajectories={"max_tokens": 48})


def test_whole_run_completes_and_random_output_is_rejected(llama_server: str, tmp_path: Path) -> None:
    config = _config(tmp_path, llama_server, None)
    run = tmp_path / "run"
    _synth("run", "--config", str(config), "--run", str(run))
    dropped = RunStore(run).dropped()
    assert {d.stage for d in dropped} == {"query_batches"} and len(dropped) == 2
    assert {d.reason for d in dropped} <= STRUCTURED_REJECTIONS
    assert Ledger(run / "usage.jsonl").stages["queries"].completion_tokens > 0
    assert not (run / "export").exists()
    _synth("stats", str(run))


def _item(store: RunStore, pool: Path, item_id: str) -> SynthItem:
    files = store.files_dir(item_id)
    files.mkdir(parents=True)
    shutil.copyfile(pool / "cat.png", files / "file_1.png")
    (files / "file_2.csv").write_text("item,price\napples,3.20\n")
    return SynthItem(id=item_id, query="What does the cat sit on, and what do apples cost?", files=[
        MadeFile(name="file_1", file_type="png", path=str(files / "file_1.png"), source="retrieved",
                 description="a cat"),
        MadeFile(name="file_2", file_type="csv", path=str(files / "file_2.csv"), source="generated",
                 description="prices")])


def test_verifier_and_agent_stages_run_on_the_local_model(llama_server: str, tmp_path: Path) -> None:
    pool = make_pool(tmp_path / "pool")
    run = tmp_path / "run"
    store = RunStore(run)
    store.append("files", _item(store, pool, "aaaa1111"))  # for the query-file verifier
    verified = _item(store, pool, "bbbb2222").model_copy(update={"query_verdict": Verdict(correct=True)})
    store.append("verify_query", verified)  # for the agent
    store.close()
    config = _config(tmp_path, llama_server, pool)
    _synth("verify-query", "--config", str(config), "--run", str(run))
    _synth("trajectories", "--config", str(config), "--run", str(run))
    dropped = {d.id: d for d in RunStore(run).dropped()}
    assert dropped["aaaa1111"].stage == "verify_query" and dropped["aaaa1111"].reason in STRUCTURED_REJECTIONS
    assert dropped["bbbb2222"].stage == "trajectories"
    assert dropped["bbbb2222"].reason in {"no_final_answer", "context_full"}, dropped["bbbb2222"]
    usage = Ledger(run / "usage.jsonl").stages
    assert usage["verify_query"].requests == 1 and usage["trajectories"].requests >= 2
