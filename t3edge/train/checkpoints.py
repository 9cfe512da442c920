"""Checkpoints that a killed run resumes from: adapter, optimizer state, data order and step.

Each checkpoint is written to a temporary folder and renamed into place, so a SIGKILL leaves
either a complete checkpoint or none. Randomness (dropout) is reseeded from (seed, step) at every
step, so the step number is the whole random state.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from t3edge.errors import T3Error
from t3edge.train.model import load_adapter_weights, save_adapter

_PREFIX = "step-"


class CheckpointState(BaseModel):
    """Where the run stood: updates done, and a fingerprint of the sample order it walks."""

    step: int
    data_signature: str


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save_checkpoint(run_dir: Path, model: Any, optimizer: Any, state: CheckpointState, *,
                    keep: int) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    root = checkpoint_dir(run_dir)
    final = root / f"{_PREFIX}{state.step:07d}"
    tmp = root / f".tmp-{state.step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_adapter(model, tmp)
    mx.save_safetensors(str(tmp / "optimizer.safetensors"), dict(tree_flatten(optimizer.state)))
    (tmp / "state.json").write_text(state.model_dump_json(indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob(f"{_PREFIX}*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(p for p in checkpoint_dir(run_dir).glob(f"{_PREFIX}*") if (p / "state.json").is_file())
    return found[-1] if found else None


def restore_checkpoint(path: Path, model: Any, optimizer: Any) -> CheckpointState:
    """Load adapter weights and optimizer state in place; return the saved state."""
    import mlx.core as mx
    from mlx.utils import tree_unflatten

    try:
        state = CheckpointState.model_validate_json((path / "state.json").read_text())
        load_adapter_weights(model, path)
        optimizer.state = tree_unflatten(list(mx.load(str(path / "optimizer.safetensors")).items()))
    except (OSError, ValueError) as exc:
        raise T3Error(f"cannot resume from {path}: {exc}",
                      hint="delete that checkpoint folder to resume from the one before") from exc
    optimizer.init(model.trainable_parameters())
    return state
