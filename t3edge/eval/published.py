"""Published numbers to print beside ours (T3-Agent paper, ICLR 2025; GTA leaderboard)."""

from __future__ import annotations

# GTA, T3-Agent's lenient protocol on its 156 dict-answer items: AnsAcc, ToolAcc, CodeExec.
GTA_T3AGENT: dict[str, tuple[float, float, float]] = {
    "tuned Qwen2-VL-7B": (53.85, 64.63, 84.32),
    "tuned MiniCPM-V-8.5B": (52.56, 65.85, 80.49),
    "untrained Qwen2-VL-7B": (42.31, 44.85, 65.19),
    "untrained MiniCPM-V-8.5B": (33.97, 36.59, 56.10),
    "GPT-4o": (57.05, 63.41, 95.12),
}
# GTA's own leaderboard (official protocol): best AnsAcc.
GTA_OFFICIAL_BEST = ("GPT-4", 46.59)

# GAIA validation AnsAcc: overall, then levels 1/2/3 where the paper gives them.
GAIA: dict[str, tuple[float, float | None, float | None, float | None]] = {
    "tuned Qwen2-VL-7B": (16.97, 26.42, 15.12, 3.84),
    "tuned MiniCPM-V-8.5B": (15.15, None, None, None),
    "untrained Qwen2-VL-7B": (9.70, None, None, None),
    "GPT-4o": (33.40, None, None, None),
}


def same_controller(model: str, adapter: str | None) -> str | None:
    """The paper's row for the same controller as `model` (tuned when an adapter is given)."""
    name = model.lower().replace("_", "-")
    if "qwen2-vl-7b" in name:
        base = "Qwen2-VL-7B"
    elif "minicpm" in name:
        base = "MiniCPM-V-8.5B"
    else:
        return None
    return f"{'tuned' if adapter else 'untrained'} {base}"
