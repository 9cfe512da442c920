"""The paper's claim on a laptop: the flywheel at its default sizes, untuned vs tuned SmolLM2-135M.

Runs `t3edge flywheel` (48 train tasks taught by the reference solutions, LoRA for 2 epochs, 60
held-out test tasks, two families of which are not in training) into a folder, then prints,
side by side for the untuned student (the baseline, measured in the same run) and the tuned one:
AnsAcc, final-answer rate, well-formed-step rate, CodeExec and tool choice, on all test tasks and
on the held-out families alone; training tokens/s and peak memory; and the time of each stage.
A killed run resumes: run the same command again.

    python bench/flywheel.py                      # in a temporary folder
    python bench/flywheel.py --out runs/flywheel  # kept (and resumable)
    python bench/flywheel.py --train-tasks 24 --test-tasks 60 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROWS = (("answer_acc", "AnsAcc"), ("final_answer_rate", "final-answer rate"),
        ("well_formed_steps", "well-formed steps"), ("code_exec", "CodeExec"), ("tool_choice", "tool choice"))


def show(out: Path) -> None:
    before, after = (json.loads((out / "eval" / w / "summary.json").read_text())["metrics"] for w in ("before", "after"))
    state = json.loads((out / "flywheel.json").read_text())
    rows = [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    tokens = sum(r["tokens"] for r in rows)
    seconds = sum(r["tokens"] / r["tokens_per_second"] for r in rows if r["tokens_per_second"])
    print(f"{before['counts']['items']} test tasks ({before['counts']['held_out']} from held-out families); "
          f"teacher kept {state['notes']['teacher']['kept']} trajectories")
    for group, title in (("all", "all test tasks"), ("held_out", "held-out families")):
        print(f"\n{title:22s} {'untuned':>8s} {'tuned':>8s} {'change':>8s}")
        for key, label in ROWS:
            a, b = before[group].get(key), after[group].get(key)
            fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
            change = f"{b - a:+.1f}" if a is not None and b is not None else "-"
            print(f"{label:22s} {fmt(a):>8s} {fmt(b):>8s} {change:>8s}")
    print(f"\ntraining: {len(rows)} updates, {tokens / seconds:.0f} tokens/s, peak memory "
          f"{max(r['peak_memory_gb'] for r in rows):.2f} GB")
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in state["done"].items())
          + f"; total {sum(state['done'].values()) / 60:.1f} min")
    a, b = before["all"]["answer_acc"], after["all"]["answer_acc"]
    print(f"AnsAcc tuned - untuned: {b - a:+.1f} points (untuned is the baseline)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "flywheel"
        done = subprocess.run([sys.executable, "-m", "t3edge", "flywheel", "--out", str(out), *extra],
                              stdout=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            sys.exit(f"the flywheel failed (exit {done.returncode}); run again with --out to resume it")
        show(out)


if __name__ == "__main__":
    main()
