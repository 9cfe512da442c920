"""The data engine: queries -> files -> query-file verifier -> trajectories -> trajectory verifier
-> filter -> MM-Traj export, against any OpenAI-compatible API (see docs/synth.md)."""
