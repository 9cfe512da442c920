"""Trajectory tuning on MLX: trajectories to masked samples, LoRA / QLoRA with resume, fuse."""
