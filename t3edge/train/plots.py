"""The loss curve of a run, drawn from its metrics JSONL (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from t3edge.jsonl import iter_jsonl


def loss_curve(metrics: Path, png: Path) -> Path:
    """Training loss per step, and validation loss where measured, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train: list[tuple[int, float]] = []
    valid: list[tuple[int, float]] = []
    for rec in iter_jsonl(metrics, on_bad_line="skip"):
        if "loss" in rec:
            train.append((rec["step"], rec["loss"]))
        if "val_loss" in rec:
            valid.append((rec["step"], rec["val_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1)
    if valid:
        ax.plot(*zip(*valid), "o-", label="valid")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
