"""Evaluation jobs behind `t3edge eval`: run, report, merge shards, score predictions, compare."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t3edge.config import data_dir
from t3edge.errors import BadInput, T3Error
from t3edge.hosts import url_is_local
from t3edge.eval.config import EvalConfig
from t3edge.eval.gaia import fetch_gaia, find_metadata, load_gaia
from t3edge.eval.gta import fetch_gta, find_root, load_gta
from t3edge.eval.items import Benchmark
from t3edge.eval.records import (
    RESULTS, EvalRecord, RunInfo, Shard, code_version, read_records, read_run_info, result_files, write_run_info,
)
from t3edge.eval.report import compute_metrics, write_report
from t3edge.eval.runner import RunOutcome, Solver, Suite, gaia_suite, gta_suite, prediction_text, run_suite, tasks_suite
from t3edge.eval.similarity import Similarity, load_similarity
from t3edge.eval.tasks import load_task_items, task_split, tasks_index
from t3edge.models import BackendKind
from t3edge.jsonl import JsonlWriter
from t3edge.trajectory import Trajectory, sha256_file


SERVER_JOBS = 4  # items at once against a server on another machine (eval.jobs unset; else 1)


def benchmark_folder(benchmark: Benchmark) -> Path:
    return data_dir() / "benchmarks" / benchmark


def resolve_data(benchmark: Benchmark, data: Path | None, cfg: EvalConfig, token: str | None = None) -> Path:
    """The dataset folder: given, or already downloaded, or fetched now (GTA public; GAIA with a token)."""
    if data is not None:
        return data
    if benchmark == "tasks":
        raise T3Error("the built-in tasks need their folder: give it as the data folder (--data)",
                      hint="make one first: t3edge tasks make OUT --split test --n 50 --seed 0")
    dest = benchmark_folder(benchmark)
    if benchmark == "gta":
        return dest if (dest / "dataset.json").is_file() else fetch_gta(dest, cfg.gta_repo)
    split = dest / "2023" / cfg.gaia_split
    if split.is_dir():
        return split
    if token is None and not os.environ.get("HF_TOKEN"):
        raise T3Error("GAIA is gated: give its folder with --data, or a hub token with --token",
                      hint=f"accept the terms at https://huggingface.co/datasets/{cfg.gaia_repo} first")
    return fetch_gaia(dest, token, cfg.gaia_split, cfg.gaia_repo)


def similarity_for(cfg: EvalConfig) -> tuple[Similarity | None, str]:
    key = os.environ.get(cfg.embedding_api_key_env, "none") if cfg.embedding_url else "none"
    return load_similarity(cfg.embedding_model, cfg.embedding_url, key)


def load_suite(benchmark: Benchmark, data: Path, cfg: EvalConfig,
               similarity: Callable[[], tuple[Similarity | None, str]] | None = None) -> tuple[Suite, str]:
    """The benchmark's items and scorer; the similarity model is loaded only if some item needs it."""
    if benchmark == "tasks":
        return tasks_suite(load_task_items(data)), "not used"
    if benchmark == "gaia":
        gaia_items = load_gaia(data, cfg.gaia_split)
        if not gaia_items:
            raise BadInput(f"the GAIA data in {data} has no items", hint="check its metadata file")
        return gaia_suite(gaia_items), "not used"
    items = load_gta(data)
    if not items:
        raise BadInput(f"the GTA data in {data} has no items", hint="check its dataset.json")
    if not any(i.kind != "objective" for i in items):
        return gta_suite(items, None), "not used"
    sim, reason = (similarity or (lambda: similarity_for(cfg)))()
    return gta_suite(items, sim, reason), sim.name if sim else f"unavailable: {reason}"


def slug(text: str) -> str:
    text = text.rstrip("/").split("/")[-1] if ("/" in text and not text.startswith("http")) else text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60] or "model"


def default_out(cfg: EvalConfig, benchmark: Benchmark, model: str, adapter: str | None, limit: int | None,
                step_format: str = "constrained") -> Path:
    """One folder per (benchmark, model, adapter, limit, step format): the same command resumes the
    same run."""
    name = (f"{benchmark}-{slug(model)}" + (f"-{slug(adapter)}" if adapter else "")
            + (f"-limit{limit}" if limit else "") + ("-free" if step_format == "free" else ""))
    return (cfg.out_dir or data_dir() / "eval") / name


@dataclass
class PreparedRun:
    """Everything a run needs: where it goes, the items and scorer, its description, the solver."""

    folder: Path
    suite: Suite
    info: RunInfo
    solve: Solver
    jobs: int = 1  # items run at once


def prepare_run(benchmark: Benchmark, model: str, cfg: EvalConfig, *, data: Path | None = None,
                backend: BackendKind | None = None, adapter: str | None = None, limit: int | None = None,
                out: Path | None = None, token: str | None = None,
                agent_overrides: dict[str, Any] | None = None) -> PreparedRun:
    """Resolve the data, load the suite and make the agent solver for `model` (+ `adapter`);
    `agent_overrides` are `agent` settings for this run (e.g. `generation.max_tokens`)."""
    from t3edge.agent import load_agent_config
    from t3edge.loading import load_backend
    from t3edge.eval.agent_solver import agent_solver
    from t3edge.models import load_models_config, resolve_model

    agent_cfg = load_agent_config({"max_steps": cfg.max_steps, "max_errors": cfg.max_errors, **(agent_overrides or {})})
    folder = out or default_out(cfg, benchmark, model, adapter, limit, agent_cfg.format)
    data = resolve_data(benchmark, data, cfg, token)
    suite, similarity = load_suite(benchmark, data, cfg)
    resolved = resolve_model(model, load_models_config(), backend)  # an unknown model fails now, not per item
    info = new_run_info(benchmark, data, model, adapter, limit, cfg, similarity)
    info.step_format = agent_cfg.format
    remote = resolved.kind == "openai" and resolved.url is not None and not url_is_local(resolved.url)
    jobs = cfg.jobs or (SERVER_JOBS if remote else 1)
    solve = agent_solver(lambda: load_backend(model, backend=backend, adapter=adapter), agent_cfg,
                         folder / "workspaces", gta_names=cfg.gta_tools, fresh_backend=resolved.kind == "replay",
                         jobs=jobs)
    return PreparedRun(folder, suite, info, solve, jobs)


def run_job(run: PreparedRun, *, shard: Shard | None = None, progress: bool = True, fsync: bool = True,
            cancel: threading.Event | None = None) -> tuple[RunOutcome, dict[str, Any] | None]:
    """Run (or resume) a prepared run, `run.jobs` items at a time, until done or `cancel` is set;
    when every item is finished, write the report."""
    info = run.info
    info.total = len(run.suite.selected(info.limit))
    write_run_info(run.folder, info)
    outcome = run_suite(run.suite, run.solve, run.folder, shard=shard, limit=info.limit, fsync=fsync,
                        progress=progress, jobs=run.jobs, cancel=cancel)
    summary = report(run.folder) if finished_count(run.folder) == info.total else None
    return outcome, summary


def collect(folders: Sequence[Path]) -> tuple[RunInfo, list[EvalRecord]]:
    """The run description and every finished record across folders, one per item, in dataset order."""
    infos = [read_run_info(f) for f in folders]
    for f, other in zip(folders[1:], infos[1:]):
        if other.identity() != infos[0].identity():
            raise T3Error(f"{f} holds a different run than {folders[0]}",
                          hint="merge only shards of the same benchmark, data, model, adapter and limit")
    by_id: dict[str, EvalRecord] = {}
    for folder in folders:
        for record in read_records(result_files(folder)):
            by_id.setdefault(record.id, record)
    return infos[0], sorted(by_id.values(), key=lambda r: r.index)


def finished_count(folder: Path) -> int:
    return len(collect([folder])[1])


def report(folder: Path, *, with_plot: bool | None = None) -> dict[str, Any]:
    """(Re)write report.md, summary.json, plot.png (and submission.jsonl for GAIA) from the records."""
    info, records = collect([folder])
    plot = info.config.get("plot", True) if with_plot is None else with_plot
    if info.benchmark == "gaia":
        write_submission(folder / "submission.jsonl", records)
    return write_report(folder, info, records, info.total, info.similarity, with_plot=plot)


def merge(folders: Sequence[Path], out: Path) -> dict[str, Any]:
    """Join shard results (from one or several folders) into `out`/results.jsonl and report."""
    info, records = collect(folders)
    if len(records) != info.total:
        raise T3Error(f"the shards hold {len(records)} of {info.total} items",
                      hint="finish every shard (rerun its command: it resumes), then merge again")
    write_run_info(out, info)
    tmp = out / (RESULTS + ".tmp")
    tmp.unlink(missing_ok=True)
    with JsonlWriter(tmp) as writer:
        for record in records:
            writer.write(record)
    tmp.replace(out / RESULTS)
    return report(out)


def write_submission(path: Path, records: Sequence[EvalRecord]) -> None:
    """GAIA's submission format: one {task_id, model_answer, reasoning_trace} per line."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps({"task_id": r.id, "model_answer": r.prediction or "",
                                 "reasoning_trace": reasoning_trace(r.trajectory)}, ensure_ascii=False) + "\n")
    tmp.replace(path)


def reasoning_trace(trajectory: Trajectory | None) -> str:
    if trajectory is None:
        return ""
    parts = []
    for step in trajectory.steps:
        parts += [f"Thought: {step.thought}" if step.thought else "", f"Code:\n{step.code}" if step.code else "",
                  f"Observation: {step.observation}" if step.observation else "",
                  f"Error: {step.error}" if step.error else ""]
    return "\n".join(p for p in parts if p)


# -------------------------------------------------------------------------------------------
# Scoring predictions made elsewhere
# -------------------------------------------------------------------------------------------


def read_predictions(benchmark: Benchmark, path: Path) -> dict[str, Any]:
    """GTA: a JSON object item id -> answer string. GAIA: submission JSONL (task_id, model_answer).
    Tasks: a JSON object task id -> answer (any JSON value: a number, a string, a list)."""
    if not path.is_file():
        raise T3Error(f"predictions file not found: {path}")
    if benchmark == "tasks":
        try:
            answers = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise T3Error(f"{path}: not JSON ({exc})", hint='task predictions are {"test-csv_total-0000": 12.5, ...}') from exc
        if not isinstance(answers, dict):
            raise T3Error(f"{path}: expected a JSON object mapping task ids to answers",
                          hint='e.g. {"test-csv_total-0000": 12.5, "test-ocr_code-0000": "KX-347"}')
        return {str(k): v for k, v in answers.items()}
    if benchmark == "gta":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise T3Error(f"{path}: not JSON ({exc})", hint='GTA predictions are {"0": "answer", ...}') from exc
        if not isinstance(data, dict) or not all(isinstance(v, (str, type(None))) for v in data.values()):
            raise T3Error(f"{path}: expected a JSON object mapping item ids to answer strings",
                          hint='e.g. {"0": "4 apples", "1": "red"}')
        return {str(k): v for k, v in data.items()}
    out: dict[str, str | None] = {}
    hint = 'one JSON object per line: {"task_id": ..., "model_answer": ..., "reasoning_trace": ...}'
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise T3Error(f"{path}:{n}: not JSON ({exc})", hint=hint) from exc
        if not isinstance(row, dict) or "task_id" not in row or "model_answer" not in row:
            raise T3Error(f"{path}:{n}: a submission line needs task_id and model_answer", hint=hint)
        answer = row["model_answer"]
        out[str(row["task_id"])] = None if answer is None else str(answer)
    return out


def score_predictions(suite: Suite, predictions: dict[str, Any],
                      per_item: Path | None = None) -> dict[str, Any]:
    """Score predictions with the same scorers as a run; optionally one JSON line per item."""
    ids = {i.id for i in suite.items}
    unknown = sorted(set(predictions) - ids)
    if unknown:
        raise T3Error(f"{len(unknown)} predictions name items not in the dataset (e.g. {unknown[0]!r})",
                      hint="check that --data is the dataset (and split) the predictions were made on")
    missing = [i.id for i in suite.items if i.id not in predictions]
    records = []
    for item in suite.items:
        pred = predictions.get(item.id)
        records.append(EvalRecord(benchmark=suite.benchmark, id=item.id, index=item.index,
                                  prediction=prediction_text(pred), verdict=suite.score(item, pred, None)))
    if per_item is not None:
        per_item.parent.mkdir(parents=True, exist_ok=True)
        with open(per_item, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps({"id": r.id, "prediction": r.prediction,
                                     "verdict": r.verdict.model_dump(mode="json")}, ensure_ascii=False) + "\n")
    return {"metrics": compute_metrics(suite.benchmark, records), "missing": len(missing), "items": len(records)}


# -------------------------------------------------------------------------------------------
# Comparing two runs
# -------------------------------------------------------------------------------------------


def item_score(record: EvalRecord) -> float | None:
    """The one number an item's result is compared by (None when it was not scored)."""
    v = record.verdict
    if v.benchmark == "tasks":
        return float(v.correct)
    if v.benchmark == "gaia":
        return None if v.correct is None else float(v.correct)
    return v.image_score if v.kind == "image" else v.official


def compare(a: Path, b: Path) -> dict[str, Any]:
    """Both runs' metrics, and the items whose prediction score changed."""
    info_a, recs_a = collect([a])
    info_b, recs_b = collect([b])
    if info_a.benchmark != info_b.benchmark:
        raise T3Error(f"cannot compare a {info_a.benchmark} run with a {info_b.benchmark} run")
    by_b = {r.id: r for r in recs_b}
    changed = []
    for ra in recs_a:
        rb = by_b.get(ra.id)
        if rb is None:
            continue
        sa, sb = item_score(ra), item_score(rb)
        if sa != sb:
            changed.append({"id": ra.id, "a": sa, "b": sb,
                            "prediction_a": ra.prediction, "prediction_b": rb.prediction})
    return {
        "benchmark": info_a.benchmark,
        "a": {"folder": str(a), "model": info_a.model, "adapter": info_a.adapter, "finished": len(recs_a),
              "metrics": compute_metrics(info_a.benchmark, recs_a)},
        "b": {"folder": str(b), "model": info_b.model, "adapter": info_b.adapter, "finished": len(recs_b),
              "metrics": compute_metrics(info_b.benchmark, recs_b)},
        "only_in_a": sorted({r.id for r in recs_a} - set(by_b)),
        "only_in_b": sorted(set(by_b) - {r.id for r in recs_a}),
        "changed": changed,
    }


def new_run_info(benchmark: Benchmark, data: Path, model: str, adapter: str | None, limit: int | None,
                 cfg: EvalConfig, similarity: str) -> RunInfo:
    if benchmark == "tasks":
        index, split = tasks_index(data), task_split(data)
    elif benchmark == "gta":
        index, split = find_root(data) / "dataset.json", None
    else:
        index, split = find_metadata(data, cfg.gaia_split), cfg.gaia_split
    return RunInfo(benchmark=benchmark, data=str(data.resolve()), data_sha256=sha256_file(index),
                   model=model, adapter=adapter, limit=limit, split=split, config=cfg.model_dump(mode="json"),
                   similarity=similarity, code_version=code_version())


