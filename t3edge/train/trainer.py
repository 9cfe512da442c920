"""The training loop: LoRA / QLoRA on MLX with assistant-only loss, resumable and data-parallel.

`iters` counts optimizer updates. Each update takes `grad_accum` micro-batches of `batch_size`
samples (global, split across processes). The loss of an update is the mean cross-entropy over
all its supervised tokens, so the result does not depend on how the batch is split.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from t3edge.config import data_dir
from t3edge.errors import T3Error
from t3edge.images import ImagePolicy
from t3edge.train.checkpoints import (
    CheckpointState,
    latest_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from t3edge.train.config import TrainConfig
from t3edge.train.data import (
    Encoded,
    Prepared,
    SampleEncoder,
    SampleInfo,
    load_trajectories,
    prepare,
)
from t3edge.train.distributed import World, init_world
from t3edge.train.model import (
    attach_lora,
    dequantize,
    is_quantized,
    language_model,
    load_base,
    model_dir,
    on_cpu,
    quantize_language_model,
    save_adapter,
)
from t3edge.train.plots import loss_curve
from t3edge.jsonl import JsonlWriter, iter_jsonl

CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"
ADAPTER_DIR = "adapter"


def run_dir_for(cfg: TrainConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    name = Path(cfg.model or "model").name + "-" + time.strftime("%Y%m%d-%H%M%S")
    return data_dir() / "train" / name


def resume_config(run_dir: Path) -> TrainConfig:
    """The settings a run started with (a resumed run continues with exactly those)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise T3Error(f"nothing to resume in {run_dir} (no {CONFIG_FILE})",
                      hint="start the run without --resume, or point `out` at the run folder")
    return TrainConfig.model_validate_json(path.read_text())


@dataclass
class Setup:
    """Everything a run needs, built once: model, data, encoder, process group."""

    cfg: TrainConfig
    world: World
    model: Any
    processor: Any
    encoder: SampleEncoder
    data: Prepared
    base: Path


def load_data(cfg: TrainConfig, encoder: SampleEncoder) -> Prepared:
    if not cfg.data:
        raise T3Error("no training data given", hint="pass --data FILE.jsonl (or set `data` in the config)")
    train = [t for p in cfg.data for t in load_trajectories(p, image_root=cfg.image_root)]
    valid = [t for p in cfg.valid_data for t in load_trajectories(p, image_root=cfg.image_root)]
    return prepare(train, encoder, max_length=cfg.max_length,
                   valid_fraction=0.0 if valid else cfg.valid_fraction, valid=valid)


def make_encoder(processor: Any, model: Any, base: Path, cfg: TrainConfig) -> SampleEncoder:
    from t3edge.models import load_models_config

    cap = cfg.max_image_pixels or load_models_config().backend.max_image_pixels
    return SampleEncoder(processor, getattr(model, "config", {}), ImagePolicy.for_model(base, max_pixels=cap),
                         image_root=cfg.image_root)


def build(cfg: TrainConfig) -> Setup:
    """Load the base (quantized for QLoRA), attach LoRA, encode the data."""
    import mlx.core as mx

    if not cfg.model:
        raise T3Error("no model given", hint="set `model` in the config or pass --model")
    world = init_world()
    if cfg.batch_size % world.size:
        raise T3Error(f"batch_size {cfg.batch_size} is not divisible by {world.size} processes",
                      hint="batch_size is global: make it a multiple of the process count")
    base = model_dir(cfg.model)
    model, processor = load_base(base)
    if is_quantized(model) and (cfg.dequantize if cfg.dequantize is not None else on_cpu()):
        dequantize(model)
    if cfg.quantize_bits is not None:
        quantize_language_model(model, cfg.quantize_bits, cfg.quantize_group_size)
    mx.random.seed(cfg.seed)
    attach_lora(model, cfg.lora)
    if cfg.grad_checkpoint:
        from mlx_vlm.trainer.common.utils import enable_model_gradient_checkpointing

        enable_model_gradient_checkpointing(language_model(model))
    encoder = make_encoder(processor, model, base, cfg)
    data = load_data(cfg, encoder)
    if not data.train:
        raise T3Error(
            f"no usable training samples ({data.dropped_too_long} over max_length {cfg.max_length}, "
            f"{data.dropped_no_target} without assistant turns, {len(data.dropped_unreadable)} unreadable)",
            hint="raise max_length or check the data with `t3edge train prepare`",
        )
    return Setup(cfg, world, model, processor, encoder, data, base)


def schedule(cfg: TrainConfig, iters: int) -> Callable[[Any], Any]:
    """Learning rate per update: linear warmup, then cosine / linear decay or constant."""
    import mlx.core as mx
    import mlx.optimizers as optim

    decay_steps = max(1, iters - cfg.warmup_steps)
    if cfg.schedule == "cosine":
        main = optim.cosine_decay(cfg.learning_rate, decay_steps, cfg.min_learning_rate)
    elif cfg.schedule == "linear":
        main = optim.linear_schedule(cfg.learning_rate, cfg.min_learning_rate, decay_steps)
    else:
        def main(_step: Any) -> Any:
            return mx.array(cfg.learning_rate, dtype=mx.float32)
    if cfg.warmup_steps <= 1:
        return main
    # Update k (from 0) of the warmup runs at learning_rate * (k + 1) / warmup_steps.
    warm = optim.linear_schedule(cfg.learning_rate / cfg.warmup_steps, cfg.learning_rate, cfg.warmup_steps - 1)
    return optim.join_schedules([warm, main], [cfg.warmup_steps])


class BatchOrder:
    """The global sample stream: one seeded permutation of the training set per epoch."""

    def __init__(self, samples: list[SampleInfo], seed: int) -> None:
        self.samples = samples
        self.seed = seed
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def micro_batch(self, k: int, size: int) -> list[SampleInfo]:
        """The k-th global micro-batch of `size` samples."""
        out = []
        for pos in range(k * size, (k + 1) * size):
            epoch, i = divmod(pos, len(self.samples))
            if epoch not in self._perms:
                self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.samples))
            out.append(self.samples[int(self._perms[epoch][i])])
        return out

    def signature(self) -> str:
        text = json.dumps([[s.sample_id, s.length, s.supervised] for s in self.samples])
        return hashlib.sha256(f"{self.seed}:{text}".encode()).hexdigest()[:16]


def total_iters(cfg: TrainConfig, n_train: int) -> int:
    per_update = cfg.batch_size * cfg.grad_accum
    return cfg.iters or max(1, math.ceil(cfg.epochs * n_train / per_update))


def collate(encoded: list[Encoded], encoder: SampleEncoder, pad_id: int) -> dict[str, Any]:
    """Right-padded ids, attention mask and loss targets, plus the pixels of every image."""
    import mlx.core as mx

    width = max(e.length for e in encoded)
    ids = np.full((len(encoded), width), pad_id, dtype=np.int32)
    attn = np.zeros((len(encoded), width), dtype=np.int32)
    targets = np.zeros((len(encoded), width), dtype=np.float32)
    for row, e in enumerate(encoded):
        ids[row, :e.length] = e.input_ids
        attn[row, :e.length] = 1
        targets[row, :e.length] = e.targets
    batch = {"input_ids": mx.array(ids), "attention_mask": mx.array(attn), "targets": mx.array(targets)}
    batch["extra"] = encoder.pixels([img for e in encoded for img in e.images])
    return batch


def token_loss(model: Any, batch: dict[str, Any], norm: float) -> tuple[Any, Any]:
    """(sum of target-token cross-entropy / norm, the plain sum): gradients follow the first."""
    from mlx import nn

    ids = batch["input_ids"]
    if hasattr(model, "language_model"):
        from mlx_vlm.trainer.vlm.sft.runtime import forward_vlm_logits

        # mlx-vlm's Qwen language models keep the last call's rotary positions for generation and
        # reuse them on the next call without images: every training sample needs its own.
        for attr in ("_position_ids", "_rope_deltas"):
            if hasattr(model.language_model, attr):
                setattr(model.language_model, attr, None)
        logits = forward_vlm_logits(model, ids[:, :-1], batch["attention_mask"][:, :-1], batch["extra"])
    else:  # a text model: causal, so right padding never reaches a real token
        logits = model(ids[:, :-1])
    ce = nn.losses.cross_entropy(logits, ids[:, 1:], reduction="none")
    total = (ce * batch["targets"][:, 1:]).sum()
    return total / norm, total


@dataclass
class StepMetrics:
    step: int
    loss: float
    learning_rate: float
    tokens: int
    supervised_tokens: int
    seconds: float
    peak_memory_gb: float

    def record(self, epoch: float) -> dict[str, Any]:
        return {
            "step": self.step, "epoch": round(epoch, 4), "loss": self.loss,
            "learning_rate": self.learning_rate, "tokens": self.tokens,
            "supervised_tokens": self.supervised_tokens,
            "tokens_per_second": self.tokens / self.seconds if self.seconds > 0 else 0.0,
            "peak_memory_gb": round(self.peak_memory_gb, 4),
        }


class Trainer:
    """Runs updates on a built Setup; `run()` trains to the end (or resumes and does)."""

    def __init__(self, setup: Setup, run_dir: Path) -> None:
        import mlx.optimizers as optim
        from mlx import nn

        self.s = setup
        self.cfg = setup.cfg
        self.run_dir = run_dir
        self.order = BatchOrder(setup.data.train, self.cfg.seed)
        self.iters = total_iters(self.cfg, len(self.order))
        self.optimizer = optim.AdamW(learning_rate=schedule(self.cfg, self.iters),
                                     weight_decay=self.cfg.weight_decay)
        self.optimizer.init(setup.model.trainable_parameters())
        self.value_and_grad = nn.value_and_grad(setup.model, token_loss)
        tok = setup.encoder.tokenizer
        self.pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else 0)
        self.step = 0

    # -- one update ---------------------------------------------------------------------------
    def _encode(self, infos: list[SampleInfo]) -> list[Encoded]:
        """The samples' tokens (encoded once, when the data was prepared) with their images."""
        out = []
        for info in infos:
            messages = self.s.data.messages(info.index)
            out.append(replace(info.tokens, images=self.s.encoder.load_images(messages)))
        return out

    def update(self) -> StepMetrics:
        """One optimizer update over `grad_accum` global micro-batches."""
        import mlx.core as mx
        import mlx.optimizers as optim
        from mlx.utils import tree_map

        cfg, world, model = self.cfg, self.s.world, self.s.model
        started = time.perf_counter()
        mx.random.seed(cfg.seed * 1_000_003 + self.step)  # dropout masks follow (seed, step)
        micro = [self.order.micro_batch(self.step * cfg.grad_accum + j, cfg.batch_size)
                 for j in range(cfg.grad_accum)]
        norm = float(sum(i.supervised for mb in micro for i in mb))
        tokens = sum(i.length for mb in micro for i in mb)
        grads: Any = None
        loss_sum = mx.array(0.0)
        for j, mb in enumerate(micro):
            batch = collate(self._encode(world.shard(mb)), self.s.encoder, self.pad_id)
            (_, total), g = self.value_and_grad(model, batch, norm)
            grads = g if grads is None else tree_map(mx.add, grads, g)
            loss_sum = loss_sum + total
            if j + 1 < len(micro):  # bound memory; the last one is evaluated with the update
                mx.eval(grads, loss_sum)
        grads, loss_sum = world.all_sum((grads, loss_sum))
        if cfg.grad_clip is not None:
            grads, _ = optim.clip_grad_norm(grads, cfg.grad_clip)
        self.optimizer.update(model, grads)
        mx.eval(model.trainable_parameters(), self.optimizer.state, loss_sum)
        self.step += 1
        return StepMetrics(self.step, float(loss_sum.item()) / norm, float(self.optimizer.learning_rate),
                           tokens, int(norm), time.perf_counter() - started,
                           mx.get_peak_memory() / 1e9)

    def validate(self) -> float | None:
        """Mean loss over the validation samples' supervised tokens (all processes together)."""
        import mlx.core as mx

        valid = self.s.data.valid
        if not valid:
            return None
        if self.cfg.val_batches is not None:
            valid = valid[: self.cfg.val_batches * self.cfg.batch_size]
        model, world = self.s.model, self.s.world
        model.eval()
        total = mx.array(0.0)
        for k in range(world.rank, len(valid), world.size):
            batch = collate(self._encode([valid[k]]), self.s.encoder, self.pad_id)
            total = total + token_loss(model, batch, 1.0)[1]
            mx.eval(total)
        model.train()
        total = world.all_sum(total)
        return float(total.item()) / sum(i.supervised for i in valid)

    # -- the run ------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        if self.s.world.is_main:
            state = CheckpointState(step=self.step, data_signature=self.order.signature())
            save_checkpoint(self.run_dir, self.s.model, self.optimizer, state, keep=self.cfg.keep_checkpoints)
            loss_curve(self.run_dir / METRICS_FILE, self.run_dir / "loss.png")

    def resume(self) -> bool:
        """Continue from the newest complete checkpoint; False when there is none."""
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            return False
        state = restore_checkpoint(ckpt, self.s.model, self.optimizer)
        if state.data_signature != self.order.signature():
            raise T3Error(f"the training data changed since {ckpt} was written",
                          hint="resume with the same data files, or start a new run")
        self.step = state.step
        metrics = self.run_dir / METRICS_FILE
        if metrics.is_file() and self.s.world.is_main:
            kept = [r for r in iter_jsonl(metrics, on_bad_line="skip") if r.get("step", 0) <= self.step]
            metrics.write_text("".join(json.dumps(r) + "\n" for r in kept))
        return True

    def _check_same_step(self) -> None:
        """Every process must resume from the same checkpoint (the run folder on each machine)."""
        import mlx.core as mx

        world = self.s.world
        total = int(world.all_sum(mx.array(self.step)).item())
        if total != self.step * world.size:
            raise T3Error(f"process {world.rank} resumes at step {self.step}, others elsewhere",
                          hint="every machine needs the same run folder (shared, or copied) to resume")

    def run(self, *, resume: bool = False, progress: bool = True,
            on_step: Callable[[dict[str, Any]], None] | None = None,
            stop: threading.Event | None = None) -> Path:
        """Train to `iters` updates; return the folder of the final adapter. Setting `stop` ends
        the run between updates with a checkpoint, raising KeyboardInterrupt."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.resume()
            self._check_same_step()
        elif latest_checkpoint(self.run_dir) is not None:
            raise T3Error(f"{self.run_dir} already holds a run with checkpoints",
                          hint="add --resume to continue it, or choose another --out")
        elif (self.run_dir / METRICS_FILE).exists() and self.s.world.is_main:
            (self.run_dir / METRICS_FILE).unlink()
        if self.s.world.is_main:
            (self.run_dir / CONFIG_FILE).write_text(self.cfg.model_dump_json(indent=2) + "\n")
        self.s.model.train()
        writer = JsonlWriter(self.run_dir / METRICS_FILE) if self.s.world.is_main else None
        bar = _Progress(self.iters, self.step, enabled=progress and self.s.world.is_main)
        per_epoch = len(self.order) / (self.cfg.batch_size * self.cfg.grad_accum)
        try:
            while self.step < self.iters:
                if stop is not None and stop.is_set():
                    if self.step > 0 and self.step % self.cfg.steps_per_save:
                        self.checkpoint()
                    raise KeyboardInterrupt
                m = self.update()
                record = m.record(self.step / per_epoch)
                last = self.step == self.iters
                if self.cfg.steps_per_eval and (self.step % self.cfg.steps_per_eval == 0 or last):
                    val = self.validate()
                    if val is not None:
                        record["val_loss"] = val
                if writer is not None:
                    writer.write(record)
                bar.advance(record)
                if on_step is not None:
                    on_step(record)
                if self.step % self.cfg.steps_per_save == 0 or last:
                    self.checkpoint()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        adapter = self.run_dir / ADAPTER_DIR
        if self.s.world.is_main:
            save_adapter(self.s.model, adapter)
            loss_curve(self.run_dir / METRICS_FILE, self.run_dir / "loss.png")
        return adapter


class _Progress:
    """A rich progress bar with loss, tokens/s and peak memory (silent when disabled)."""

    def __init__(self, total: int, done: int, *, enabled: bool) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            TextColumn("{task.fields[info]}"))
        self.task = self.bar.add_task("train", total=total, completed=done, info="")
        self.bar.start()

    def advance(self, record: dict[str, Any]) -> None:
        if self.bar is None:
            return
        info = (f"loss {record['loss']:.4f}  {record['tokens_per_second']:.0f} tok/s  "
                f"{record['peak_memory_gb']:.2f} GB")
        if "val_loss" in record:
            info += f"  val {record['val_loss']:.4f}"
        self.bar.update(self.task, advance=1, info=info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
          on_step: Callable[[dict[str, Any]], None] | None = None,
          stop: threading.Event | None = None) -> Path:
    """Build and run a training job; returns the final adapter folder (see `Trainer.run` for `stop`)."""
    run_dir = run_dir_for(cfg)
    if resume:
        cfg = resume_config(run_dir).model_copy(update={"out": str(run_dir)})
    setup = build(cfg)
    return Trainer(setup, run_dir).run(resume=resume, progress=progress, on_step=on_step, stop=stop)
