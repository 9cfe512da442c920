"""Aggregate metrics over scored items, each labelled with the protocol it follows.

All percentages are 0-100. A metric that cannot be computed (nothing to count, or items skipped
for want of an embedding model) is None, never a silent zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from t3edge.eval.gaia_score import GAIAVerdict
from t3edge.eval.gta_score import CATEGORIES, GTAVerdict, tool_category
from t3edge.eval.tasks import TasksVerdict
from t3edge.trajectory import Trajectory

_EPS = 1e-5  # GTA's scorer adds this to the F1 denominators


def _pct(num: float, den: float) -> float | None:
    return 100.0 * num / den if den else None


def code_exec(trajectories: Sequence[Trajectory]) -> tuple[int, int]:
    """(code blocks that ran without error, code blocks run): T3-Agent's CodeExec."""
    blocks = [s for t in trajectories for s in t.steps if s.code is not None]
    return sum(1 for s in blocks if s.error is None), len(blocks)


def tool_accuracy(pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> tuple[int, int]:
    """(matches, reference calls): the k-th tool call against the reference's k-th, per item.

    T3-Agent defines ToolAcc as tool-selection accuracy without a formula; this positional reading
    is ours (docs/eval.md)."""
    hits = total = 0
    for predicted, reference in pairs:
        total += len(reference)
        hits += sum(1 for p, r in zip(predicted, reference) if p == r)
    return hits, total


def tool_f1(verdicts: Sequence[GTAVerdict]) -> dict[str, float | None]:
    """GTA's per-category tool F1: a reference call counts as found when the item's prediction
    called that tool at all (failed calls too); precision divides by every predicted call of the
    category, so it can exceed 1, as in GTA. None where a category has no reference call (GTA
    divides by zero there)."""
    found = dict.fromkeys(CATEGORIES, 0)
    predicted = dict.fromkeys(CATEGORIES, 0)
    reference = dict.fromkeys(CATEGORIES, 0)
    for v in verdicts:
        for name in v.predicted_tools:
            cat = tool_category(name)
            if cat:
                predicted[cat] += 1
        for name in v.reference_tools:
            cat = tool_category(name)
            if cat:
                reference[cat] += 1
                found[cat] += name in v.predicted_tools
    out: dict[str, float | None] = {}
    for cat in CATEGORIES:
        if not reference[cat]:
            out[cat] = None
            continue
        precision = found[cat] / (predicted[cat] + _EPS)
        recall = found[cat] / reference[cat]
        out[cat] = 100.0 * 2 * precision * recall / (precision + recall + _EPS)
    return out


def gta_metrics(verdicts: Sequence[GTAVerdict], trajectories: Sequence[Trajectory] = ()) -> dict[str, Any]:
    objective = [v for v in verdicts if v.kind == "objective"]
    subjective = [v for v in verdicts if v.kind == "subjective"]
    images = [v for v in verdicts if v.kind == "image"]
    text = objective + subjective
    subj_scored = [v for v in subjective if v.official is not None]
    img_scored = [v for v in images if v.image_score is not None]
    text_sum = sum(v.official or 0.0 for v in text)
    complete_text = len(subj_scored) == len(subjective)
    recorded = [v for v in verdicts if v.tools_recorded]
    ok, blocks = code_exec(trajectories)
    hits, refs = tool_accuracy([(v.predicted_tools, v.reference_tools) for v in recorded])
    return {
        "counts": {
            "items": len(verdicts), "text": len(text), "objective": len(objective),
            "subjective": len(subjective), "image": len(images), "answered": sum(v.answered for v in verdicts),
            "subjective_skipped": len(subjective) - len(subj_scored), "image_skipped": len(images) - len(img_scored),
            "code_blocks": blocks, "reference_tool_calls": refs,
        },
        "official": {
            "answer_acc": _pct(text_sum, len(text)) if complete_text else None,
            "answer_acc_objective": _pct(sum(v.official or 0.0 for v in objective), len(objective)),
            "subjective_similarity": _pct(sum(v.official or 0.0 for v in subj_scored), len(subj_scored)),
            "ans_plus_i": (_pct(text_sum + sum(v.image_score or 0.0 for v in img_scored), len(verdicts))
                           if complete_text and len(img_scored) == len(images) else None),
            "tool_f1": tool_f1(recorded) if recorded else dict.fromkeys(CATEGORIES),
        },
        "t3agent": {
            "answer_acc": _pct(sum(bool(v.lenient) for v in objective), len(objective)),
            "tool_acc": _pct(hits, refs),
            "code_exec": _pct(ok, blocks),
        },
    }


def gaia_metrics(verdicts: Sequence[GAIAVerdict], trajectories: Sequence[Trajectory] = ()) -> dict[str, Any]:
    scored = [v for v in verdicts if v.correct is not None]
    levels = sorted({v.level for v in verdicts})
    per_level = {}
    for level in levels:
        at = [v for v in scored if v.level == level]
        per_level[str(level)] = {"n": len(at), "correct": sum(bool(v.correct) for v in at),
                                 "accuracy": _pct(sum(bool(v.correct) for v in at), len(at))}
    ok, blocks = code_exec(trajectories)
    return {
        "counts": {"items": len(verdicts), "scored": len(scored), "hidden_answers": len(verdicts) - len(scored),
                   "answered": sum(v.answered for v in verdicts), "code_blocks": blocks},
        "official": {"accuracy": _pct(sum(bool(v.correct) for v in scored), len(scored)), "levels": per_level},
        "t3agent": {"code_exec": _pct(ok, blocks)},
    }


TASK_RATES = ("answer_acc", "final_answer_rate", "well_formed_steps", "code_exec", "tool_choice")


def _task_rates(pairs: Sequence[tuple[TasksVerdict, Trajectory | None]]) -> dict[str, float | None]:
    trajectories = [t for _, t in pairs if t is not None]
    steps = [s for t in trajectories for s in t.steps]
    ok, blocks = code_exec(trajectories)
    finished = sum(t.ended == "final_answer" if t is not None else v.answered for v, t in pairs)
    tool_tasks = [v for v, _ in pairs if v.tools_ok is not None]
    return {
        "answer_acc": _pct(sum(v.correct for v, _ in pairs), len(pairs)),
        "final_answer_rate": _pct(finished, len(pairs)),
        "well_formed_steps": _pct(sum(s.kind != "parse_error" for s in steps), len(steps)),
        "code_exec": _pct(ok, blocks),
        "tool_choice": _pct(sum(bool(v.tools_ok) for v in tool_tasks), len(tool_tasks)),
    }


def tasks_metrics(pairs: Sequence[tuple[TasksVerdict, Trajectory | None]]) -> dict[str, Any]:
    """The built-in tasks: AnsAcc (the task's checker), final-answer rate, well-formed-step rate,
    CodeExec and tool choice, over all tasks, the held-out families and the train families; and
    AnsAcc and tool choice per family."""
    held = [p for p in pairs if p[0].held_out]
    seen = [p for p in pairs if not p[0].held_out]
    families: dict[str, Any] = {}
    for name in sorted({v.family for v, _ in pairs}):
        at = [p for p in pairs if p[0].family == name]
        rates = _task_rates(at)
        families[name] = {"n": len(at), "held_out": at[0][0].held_out, "answer_acc": rates["answer_acc"],
                          "tool_choice": rates["tool_choice"]}
    trajectories = [t for _, t in pairs if t is not None]
    return {
        "counts": {"items": len(pairs), "held_out": len(held), "train_families": len(seen),
                   "answered": sum(v.answered for v, _ in pairs), "correct": sum(v.correct for v, _ in pairs),
                   "steps": sum(len(t.steps) for t in trajectories), "code_blocks": code_exec(trajectories)[1],
                   "tool_tasks": sum(v.tools_ok is not None for v, _ in pairs)},
        "all": _task_rates(pairs),
        "held_out": _task_rates(held),
        "train_families": _task_rates(seen),
        "families": families,
    }
