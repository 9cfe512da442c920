"""Evaluation on GTA and GAIA: loaders, the official scorers (exact ports), T3-Agent's lenient
GTA protocol, trajectory metrics (CodeExec, ToolAcc), a resumable sharded runner and reports."""
