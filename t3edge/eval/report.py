"""Reports of a run: `report.md` (ours beside the published numbers, every protocol labelled),
`summary.json` (config, model, adapter, code version, counts, every metric) and `plot.png`."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t3edge.eval.gaia_score import GAIAVerdict
from t3edge.eval.gta_score import CATEGORIES, GTAVerdict
from t3edge.eval.metrics import TASK_RATES, gaia_metrics, gta_metrics, tasks_metrics
from t3edge.eval.published import GAIA, GTA_OFFICIAL_BEST, GTA_T3AGENT, same_controller
from t3edge.eval.records import EvalRecord, RunInfo
from t3edge.eval.tasks import TasksVerdict

PROTOCOLS = {
    "gta.official": "GTA official: exact port of GTA's scorer (whitelist/blacklist regex with word "
                    "boundaries; subjective and image queries by sentence-embedding similarity)",
    "gta.t3agent": "T3-Agent protocol (lenient): case-insensitive substring of any alias per "
                   "whitelist group, blacklist ignored, dict answers only (the paper's 156 items)",
    "gaia.official": "GAIA official: exact port of GAIA's question scorer",
    "code_exec": "CodeExec: share of generated code blocks that ran without error",
    "tool_acc": "ToolAcc: share of reference tool calls matched by the predicted call at the same position",
    "tasks.check": "AnsAcc: share of tasks whose final answer passes the task's own checker (numbers within "
                   "the tolerance, normalized strings, sets, lists, sizes; no final answer is wrong)",
    "tasks.final": "final-answer rate: share of tasks whose run ended with final_answer",
    "tasks.well_formed": "well-formed steps: share of model steps that parsed into Thought/Code (not parse_error)",
    "tasks.tool_choice": "tool choice: share of the tasks that expect tools whose run called every expected tool "
                         "at least once (failed calls count; extra calls are not penalised)",
}


def protocols(benchmark: str) -> dict[str, str]:
    """The protocols a benchmark's report uses."""
    if benchmark == "gta":
        keys = ["gta.official", "gta.t3agent", "tool_acc", "code_exec"]
    elif benchmark == "tasks":
        keys = ["tasks.check", "tasks.final", "tasks.well_formed", "code_exec", "tasks.tool_choice"]
    else:
        keys = ["gaia.official", "code_exec"]
    return {k: PROTOCOLS[k] for k in keys}


def compute_metrics(benchmark: str, records: Sequence[EvalRecord]) -> dict[str, Any]:
    trajectories = [r.trajectory for r in records if r.trajectory is not None]
    verdicts = [r.verdict for r in records]
    if benchmark == "gta":
        return gta_metrics([v for v in verdicts if isinstance(v, GTAVerdict)], trajectories)
    if benchmark == "tasks":
        return tasks_metrics([(r.verdict, r.trajectory) for r in records if isinstance(r.verdict, TasksVerdict)])
    return gaia_metrics([v for v in verdicts if isinstance(v, GAIAVerdict)], trajectories)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def summary(info: RunInfo, records: Sequence[EvalRecord], total: int, similarity: str) -> dict[str, Any]:
    return {
        "benchmark": info.benchmark, "model": info.model, "adapter": info.adapter, "data": info.data,
        "split": info.split, "limit": info.limit, "code_version": info.code_version, "config": info.config,
        "finished": len(records), "total": total, "complete": len(records) == total,
        "similarity": similarity, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metrics": compute_metrics(info.benchmark, records), "protocols": protocols(info.benchmark),
    }


def markdown(s: dict[str, Any]) -> str:
    model = s["model"] + (f" + adapter {s['adapter']}" if s["adapter"] else "")
    lines = [
        f"# {s['benchmark'].upper()} evaluation: {model}", "",
        f"- items finished: {s['finished']} of {s['total']}"
        + ("" if s["complete"] else " (incomplete: rerun to finish)"),
        f"- data: {s['data']}" + (f" ({s['split']})" if s["split"] else ""),
        f"- code version: {s['code_version']}", f"- similarity model: {s['similarity']}", "",
    ]
    m = s["metrics"]
    mine = same_controller(s["model"], s["adapter"])
    if s["benchmark"] == "gta":
        lines += _gta_tables(m, mine)
    elif s["benchmark"] == "tasks":
        lines += _tasks_tables(m)
    else:
        lines += _gaia_tables(m, mine)
    lines += ["", "## Protocols", ""] + [f"- {text}" for text in protocols(s["benchmark"]).values()]
    return "\n".join(lines) + "\n"


def _gta_tables(m: dict[str, Any], mine: str | None) -> list[str]:
    c, off, t3 = m["counts"], m["official"], m["t3agent"]
    rows = [
        ("GTA official", f"AnsAcc ({c['text']} text queries)", off["answer_acc"]),
        ("GTA official", f"AnsAcc, objective queries only ({c['objective']})", off["answer_acc_objective"]),
        ("GTA official", f"subjective similarity ({c['subjective'] - c['subjective_skipped']} scored, "
                         f"{c['subjective_skipped']} skipped)", off["subjective_similarity"]),
        ("GTA official", f"Ans+I ({c['items']} queries, {c['image']} image; {c['image_skipped']} skipped)",
         off["ans_plus_i"]),
        *[("GTA official", f"tool F1, {cat}", off["tool_f1"][cat]) for cat in CATEGORIES],
        ("T3-Agent (lenient)", f"AnsAcc ({c['objective']} dict-answer queries)", t3["answer_acc"]),
        ("T3-Agent", f"ToolAcc ({c['reference_tool_calls']} reference calls)", t3["tool_acc"]),
        ("T3-Agent", f"CodeExec ({c['code_blocks']} code blocks)", t3["code_exec"]),
    ]
    out = ["## Ours", "", "| protocol | metric | value |", "|---|---|---|"]
    out += [f"| {p} | {name} | {_fmt(v)} |" for p, name, v in rows]
    out += ["", "## Beside the T3-Agent paper (its lenient protocol, 156 items)", "",
            "| controller | AnsAcc | ToolAcc | CodeExec |", "|---|---|---|---|",
            f"| **ours** | {_fmt(t3['answer_acc'])} | {_fmt(t3['tool_acc'])} | {_fmt(t3['code_exec'])} |"]
    for name, (ans, tool, code) in GTA_T3AGENT.items():
        mark = " (same controller)" if name == mine else ""
        out.append(f"| {name}{mark} | {ans:.2f} | {tool:.2f} | {code:.2f} |")
    who, best = GTA_OFFICIAL_BEST
    out += ["", f"GTA leaderboard (official protocol): best AnsAcc {best:.2f} ({who}); ours {_fmt(off['answer_acc'])}."]
    return out


TASK_RATE_NAMES = {"answer_acc": "AnsAcc", "final_answer_rate": "final-answer rate",
                   "well_formed_steps": "well-formed steps", "code_exec": "CodeExec", "tool_choice": "tool choice"}


def _tasks_tables(m: dict[str, Any]) -> list[str]:
    c = m["counts"]
    out = ["## Ours (the built-in tasks, each scored by its own checker)", "",
           f"- tasks: {c['items']} ({c['held_out']} of held-out families, never in train); "
           f"answered {c['answered']}, correct {c['correct']}",
           f"- steps: {c['steps']}; code blocks: {c['code_blocks']}; tasks that expect tools: {c['tool_tasks']}", "",
           f"| metric | all ({c['items']}) | held-out families ({c['held_out']}) | "
           f"train families ({c['train_families']}) |", "|---|---|---|---|"]
    for key in TASK_RATES:
        out.append(f"| {TASK_RATE_NAMES[key]} | {_fmt(m['all'][key])} | {_fmt(m['held_out'][key])} | "
                   f"{_fmt(m['train_families'][key])} |")
    out += ["", "| family | held out | tasks | AnsAcc | tool choice |", "|---|---|---|---|---|"]
    for name, f in m["families"].items():
        out.append(f"| {name} | {'yes' if f['held_out'] else ''} | {f['n']} | {_fmt(f['answer_acc'])} | "
                   f"{_fmt(f['tool_choice'])} |")
    return out


def _gaia_tables(m: dict[str, Any], mine: str | None) -> list[str]:
    c, levels = m["counts"], m["official"]["levels"]
    lv = [levels.get(str(k), {}).get("accuracy") for k in (1, 2, 3)]
    out = ["## Ours (GAIA official scorer)", "",
           f"- scored: {c['scored']} of {c['items']} ({c['hidden_answers']} with hidden answers)",
           f"- CodeExec ({c['code_blocks']} code blocks): {_fmt(m['t3agent']['code_exec'])}", "",
           "| controller | AnsAcc | Level 1 | Level 2 | Level 3 |", "|---|---|---|---|---|",
           f"| **ours** | {_fmt(m['official']['accuracy'])} | {_fmt(lv[0])} | {_fmt(lv[1])} | {_fmt(lv[2])} |"]
    for name, (acc, l1, l2, l3) in GAIA.items():
        mark = " (same controller)" if name == mine else ""
        out.append(f"| {name}{mark} (paper, validation) | {acc:.2f} | {_fmt(l1)} | {_fmt(l2)} | {_fmt(l3)} |")
    out += ["", "| level | items | correct |", "|---|---|---|"]
    out += [f"| {k} | {v['n']} | {v['correct']} |" for k, v in levels.items()]
    return out


def plot(s: dict[str, Any], path: Path) -> Path:
    """Per tool category (GTA) or per level (GAIA), beside the paper where it has numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = s["metrics"]
    fig, ax = plt.subplots(figsize=(9, 4.5) if s["benchmark"] == "tasks" else (7, 4))
    if s["benchmark"] == "tasks":
        families = m["families"]
        labels = [*families, "all", "held-out"]
        values = [*(f["answer_acc"] for f in families.values()), m["all"]["answer_acc"], m["held_out"]["answer_acc"]]
        colours = [("#cc6677" if f["held_out"] else "#4477aa") for f in families.values()] + ["#222222", "#cc6677"]
        bars = ax.bar(labels, [v or 0.0 for v in values], color=colours)
        ax.set_title(f"Tasks: AnsAcc per family (red: held out of train) - {s['model']}")
        ax.set_ylabel("AnsAcc %")
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    elif s["benchmark"] == "gta":
        labels = [*CATEGORIES, "AnsAcc, objective\n(GTA official)", "AnsAcc\n(T3-Agent)"]
        values = [*(m["official"]["tool_f1"][c] for c in CATEGORIES),
                  m["official"]["answer_acc_objective"], m["t3agent"]["answer_acc"]]
        ax.set_title(f"GTA: tool F1 per category and answer accuracy - {s['model']}")
        bars = ax.bar(labels, [v or 0.0 for v in values], color="#4477aa")
        ax.set_ylabel("%")
    else:
        levels = m["official"]["levels"]
        labels = ["all", *(f"level {k}" for k in levels)]
        values = [m["official"]["accuracy"], *(v["accuracy"] for v in levels.values())]
        paper = GAIA["tuned Qwen2-VL-7B"]
        paper_values = [paper[0], *(paper[int(k)] if k in {"1", "2", "3"} else None for k in levels)]
        x = range(len(labels))
        bars = ax.bar([i - 0.2 for i in x], [v or 0.0 for v in values], width=0.4, label="ours", color="#4477aa")
        ax.bar([i + 0.2 for i in x], [v or 0.0 for v in paper_values], width=0.4,
               label="paper: tuned Qwen2-VL-7B", color="#bbbbbb")
        ax.set_xticks(list(x), labels)
        ax.legend()
        ax.set_title(f"GAIA accuracy per level - {s['model']}")
        ax.set_ylabel("accuracy %")
    for bar, v in zip(bars, values):
        ax.annotate("n/a" if v is None else f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 105)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(folder: Path, info: RunInfo, records: Sequence[EvalRecord], total: int,
                 similarity: str = "not used", *, with_plot: bool = True) -> dict[str, Any]:
    """Write report.md, summary.json and plot.png into `folder`; returns the summary."""
    s = summary(info, sorted(records, key=lambda r: r.index), total, similarity)
    (folder / "summary.json").write_text(json.dumps(s, indent=2), encoding="utf-8")
    (folder / "report.md").write_text(markdown(s), encoding="utf-8")
    if with_plot:
        plot(s, folder / "plot.png")
    return s
