"""Settings of a tuning run (config section `train`, shipped defaults in configs/train.toml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


class LoraSettings(BaseModel):
    """The adapter: rank, alpha (scale = alpha / rank), dropout and which linear layers get one."""

    rank: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="suffixes of language-model linear layers (the vision tower stays frozen)",
    )
    num_layers: int | None = Field(
        None, ge=1, description="adapt only the last N blocks (text models; fewer trains faster)")


class TrainConfig(BaseModel):
    """One LoRA / QLoRA run over trajectories. `iters` counts optimizer updates."""

    model: str | None = Field(None, description="registry name, or an HF/MLX model folder")
    data: list[str] = Field(default_factory=list, description="trajectory JSONL files (ours or MM-Traj)")
    image_root: str | None = Field(None, description="folder that MM-Traj image paths are relative to")
    valid_data: list[str] = Field(default_factory=list, description="separate validation JSONL files")
    valid_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="held out when valid_data is empty")
    out: str | None = Field(None, description="run folder (default: <data dir>/train/<run name>)")
    max_length: int = Field(10240, ge=16, description="longer samples are dropped and counted")
    max_image_pixels: int | None = Field(None, description="cap per image (default: models.toml)")

    lora: LoraSettings = Field(default_factory=LoraSettings)
    quantize_bits: Literal[4, 8] | None = Field(
        None, description="quantize the language model in memory first (QLoRA on a float base)")
    quantize_group_size: Literal[32, 64, 128] = 64
    dequantize: bool | None = Field(
        None, description="train on float weights of a quantized base; None: on a CPU, where MLX's "
                          "quantized matmuls are several times slower")

    iters: int | None = Field(None, ge=1, description="optimizer updates; None: `epochs` passes")
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(1, ge=1, description="samples per micro-batch (global, all processes)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer update")
    grad_checkpoint: bool = False
    learning_rate: float = Field(1e-5, gt=0)
    min_learning_rate: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = Field(0, ge=0)

    steps_per_eval: int | None = Field(100, ge=1)
    val_batches: int | None = Field(None, ge=1, description="None: the whole validation split")
    steps_per_save: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.min_learning_rate > self.learning_rate:
            raise ValueError("min_learning_rate must not exceed learning_rate")
        return self
