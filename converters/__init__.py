"""Bridges between checkpoint worlds: Hugging Face, MLX, GGUF and PEFT (`t3edge convert`)."""
