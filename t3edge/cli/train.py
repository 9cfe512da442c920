"""`t3edge train`: LoRA / QLoRA trajectory tuning on MLX; `prepare`, `fuse` and `export` after it."""

from __future__ import annotations

import json
import shlex
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from t3edge.errors import T3Error

console = Console()


def _config(config_file: str | None, overrides: dict[str, Any]) -> Any:
    from t3edge.config import load_config
    from t3edge.train.config import TrainConfig

    return load_config("train", TrainConfig, file=config_file, overrides=overrides)


@click.group(invoke_without_command=True)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="A train TOML (e.g. configs/train/qwen2-vl-2b-qlora.toml).")
@click.option("--model", "-m", default=None, help="Registry name or model folder (MLX or HF layout).")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Trajectory JSONL, ours or MM-Traj (repeatable).")
@click.option("--valid-data", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--image-root", type=click.Path(file_okay=False), default=None,
              help="Folder that MM-Traj image paths are relative to.")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None, help="Run folder.")
@click.option("--iters", type=int, default=None, help="Optimizer updates.")
@click.option("--epochs", type=float, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--grad-accum", type=int, default=None)
@click.option("--learning-rate", "--lr", type=float, default=None)
@click.option("--warmup-steps", type=int, default=None)
@click.option("--max-length", type=int, default=None)
@click.option("--lora-rank", type=int, default=None)
@click.option("--lora-alpha", type=float, default=None)
@click.option("--lora-layers", type=int, default=None, help="Adapt only the last N blocks (text models).")
@click.option("--quantize-bits", type=click.Choice(["4", "8"]), default=None,
              help="QLoRA on a float base: quantize the language model first.")
@click.option("--grad-checkpoint/--no-grad-checkpoint", default=None)
@click.option("--steps-per-save", type=int, default=None)
@click.option("--steps-per-eval", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--resume", is_flag=True, help="Continue the run in --out (or the config's `out`).")
@click.option("--no-progress", is_flag=True, help="No progress bar (metrics still go to metrics.jsonl).")
@click.pass_context
def train(ctx: click.Context, config_file: str | None, model: str | None, data: tuple[str, ...],
          valid_data: tuple[str, ...], image_root: str | None, out: str | None, iters: int | None,
          epochs: float | None, batch_size: int | None, grad_accum: int | None,
          learning_rate: float | None, warmup_steps: int | None, max_length: int | None,
          lora_rank: int | None, lora_alpha: float | None, lora_layers: int | None, quantize_bits: str | None,
          grad_checkpoint: bool | None, steps_per_save: int | None, steps_per_eval: int | None,
          seed: int | None, resume: bool, no_progress: bool) -> None:
    """LoRA / QLoRA trajectory tuning on MLX (run with --config; see `prepare`, `fuse`, `export`).

    \b
    t3edge train --config configs/train/qwen2-vl-2b-qlora.toml --data trajs.jsonl
    t3edge train --config configs/train/qwen2-vl-2b-qlora.toml --resume
    """
    if ctx.invoked_subcommand is not None:
        return
    from t3edge.blas import relaunch_with_fast_blas

    note = relaunch_with_fast_blas()  # re-executes with a system OpenBLAS where MLX's own is slow
    if note:
        click.echo(note, err=True)
    from t3edge.train.distributed import init_world
    from t3edge.train.trainer import run_dir_for
    from t3edge.train.trainer import train as run_training

    cfg = _config(config_file, {
        "model": model, "data": list(data) or None, "valid_data": list(valid_data) or None,
        "image_root": image_root, "out": out, "iters": iters, "epochs": epochs,
        "batch_size": batch_size, "grad_accum": grad_accum, "learning_rate": learning_rate,
        "warmup_steps": warmup_steps, "max_length": max_length, "lora.rank": lora_rank,
        "lora.alpha": lora_alpha, "lora.num_layers": lora_layers, "quantize_bits": int(quantize_bits) if quantize_bits else None,
        "grad_checkpoint": grad_checkpoint, "steps_per_save": steps_per_save,
        "steps_per_eval": steps_per_eval, "seed": seed,
    })
    if resume and not cfg.out:
        raise T3Error("--resume needs the run folder", hint="pass --out RUN_DIR (or set `out` in the config)")
    run_dir = run_dir_for(cfg)
    world = init_world()
    stop = threading.Event()
    previous_handler = signal.getsignal(signal.SIGINT)
    if world.size == 1:  # processes of a distributed run must stop together: there Ctrl-C quits at once
        signal.signal(signal.SIGINT, _first_interrupt_stops(stop))
    try:
        adapter = run_training(cfg.model_copy(update={"out": str(run_dir)}), resume=resume,
                               progress=not no_progress, stop=stop)
    except KeyboardInterrupt:
        if world.is_main:
            click.echo(f"to continue from the last checkpoint: t3edge train --out {shlex.quote(str(run_dir))} "
                       "--resume", err=True)
        raise
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    if not world.is_main:
        return
    console.print(f"adapter: [bold]{adapter}[/]  metrics: {run_dir / 'metrics.jsonl'}  "
                  f"loss curve: {run_dir / 'loss.png'}")


def _first_interrupt_stops(stop: threading.Event) -> Callable[[int, FrameType | None], None]:
    """A SIGINT handler: the first Ctrl-C stops training after the current update (with a
    checkpoint), a second one quits at once. It never raises inside MLX's own calls."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("stopping after this update and saving a checkpoint (Ctrl-C again to quit at once)", err=True)

    return handler


@train.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "-m", default=None, help="Registry name or model folder (its tokenizer counts).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--max-length", type=int, default=None)
@click.option("--image-root", type=click.Path(file_okay=False), default=None)
@click.option("--bins", type=int, default=10, show_default=True)
def prepare(data: tuple[str, ...], model: str | None, config_file: str | None, max_length: int | None,
            image_root: str | None, bins: int) -> None:
    """Check DATA as training samples: token lengths, masked / supervised tokens, drops."""
    from t3edge.train.data import length_histogram
    from t3edge.train.model import load_base, model_dir
    from t3edge.train.trainer import load_data, make_encoder

    cfg = _config(config_file, {"model": model, "data": list(data), "max_length": max_length,
                                "image_root": image_root})
    if not cfg.model:
        raise T3Error("no model given", hint="pass --model (its tokenizer and template are used)")
    base = model_dir(cfg.model)
    mdl, processor = load_base(base)
    prepared = load_data(cfg, make_encoder(processor, mdl, base, cfg))

    hist = Table(title="token lengths", show_edge=False)
    for col in ("from", "to", "samples", ""):
        hist.add_column(col, justify="right" if col else "left")
    rows = length_histogram(prepared.lengths, bins)
    peak = max((c for _, _, c in rows), default=1) or 1
    for low, high, count in rows:
        hist.add_row(str(low), str(high), str(count), "#" * round(30 * count / peak))
    console.print(hist)
    kept = len(prepared.train) + len(prepared.valid)
    summary = Table(show_header=False, show_edge=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    for label, value in [
        ("samples kept", kept), ("train / valid", f"{len(prepared.train)} / {len(prepared.valid)}"),
        (f"dropped: longer than {cfg.max_length}", prepared.dropped_too_long),
        ("dropped: no assistant turn", prepared.dropped_no_target),
        ("dropped: unreadable images", len(prepared.dropped_unreadable)),
        ("tokens", prepared.total_tokens), ("masked tokens", prepared.masked_tokens),
        ("supervised tokens", prepared.supervised_tokens),
    ]:
        summary.add_row(label, str(value))
    console.print(summary)
    for line in prepared.dropped_unreadable[:5]:
        console.print(f"[yellow]unreadable:[/] {line}", markup=False, highlight=False)


def _adapter_and_base(path: str, model: str | None) -> tuple[Path, Path]:
    """The adapter folder of a run (or the folder itself) and its base model."""
    from t3edge.train.model import model_dir
    from t3edge.train.trainer import ADAPTER_DIR, CONFIG_FILE

    p = Path(path)
    adapter = p / ADAPTER_DIR if (p / ADAPTER_DIR / "adapters.safetensors").is_file() else p
    if not (adapter / "adapters.safetensors").is_file():
        raise T3Error(f"no adapter in {p}", hint="give a run folder or a folder with adapters.safetensors")
    if model is None:
        for cand in (adapter / CONFIG_FILE, adapter.parent / CONFIG_FILE):
            if cand.is_file():
                model = json.loads(cand.read_text()).get("model")
                break
    if model is None:
        raise T3Error(f"which base model does {adapter} belong to?", hint="pass --model")
    return adapter, model_dir(model)


@train.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "-m", default=None, help="The base model (default: the run's).")
@click.option("--out", "-o", type=click.Path(file_okay=False), required=True, help="Fused model folder.")
@click.option("--dequantize", is_flag=True, help="MLX layout: save float weights even on a 4-bit base.")
@click.option("--hf", "hf_layout", is_flag=True,
              help="Write the Hugging Face layout instead (the input of `t3edge convert gguf`).")
def fuse(run: str, model: str | None, out: str, dequantize: bool, hf_layout: bool) -> None:
    """Merge a run's adapter into its base model: a model folder that needs no adapter.

    \b
    t3edge train fuse runs/qwen2-vl-2b-qlora --out fused-mlx
    t3edge train fuse runs/qwen2-vl-2b-qlora --hf --out fused-hf
    """
    adapter, base = _adapter_and_base(run, model)
    if hf_layout:
        try:
            from converters.fuse import fuse as fuse_hf
        except ImportError as exc:
            raise T3Error(f"the converters cannot be loaded ({exc})",
                          hint='install everything with: pip install -e ".[all]"') from exc
        folder = fuse_hf(base, adapter, out)
    else:
        from t3edge.train.model import fuse as fuse_mlx

        folder = fuse_mlx(base, adapter, Path(out), dequantize=dequantize)
    console.print(f"fused model: [bold]{folder}[/]")


@train.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--to", "fmt", type=click.Choice(["peft", "gguf"]), required=True)
@click.option("--model", "-m", default=None, help="The base model (default: the run's).")
@click.option("--out", "-o", type=click.Path(), required=True,
              help="PEFT: a folder; GGUF: the adapter .gguf file.")
def export(run: str, fmt: str, model: str | None, out: str) -> None:
    """Export a run's adapter for other runtimes: PEFT (transformers) or GGUF LoRA (llama.cpp)."""
    adapter, base = _adapter_and_base(run, model)
    result, lora = export_adapter(adapter, base, fmt, Path(out))
    console.print(f"{fmt} adapter: [bold]{result}[/] ({len(lora.layers)} layers, rank {lora.rank}, "
                  f"alpha {lora.alpha:g})")


def export_adapter(adapter: Path, base: Path, fmt: str, out: Path) -> tuple[Path, Any]:
    """An MLX adapter as PEFT (a folder) or a GGUF LoRA (a file) for `base`; (path, the adapter).

    A GGUF LoRA of a `llama` model gets llama.cpp's q/k row layout, so it applies to the GGUF the
    base was converted from (`t3edge convert from-gguf`)."""
    try:
        from converters.lora import check_fits, read_mlx, write_gguf_lora, write_peft
        from converters.source import SUPPORTED_ARCHS, TEXT_ARCHS, ModelSource
    except ImportError as exc:
        raise T3Error(f"the adapter converters cannot be loaded ({exc})",
                      hint='install everything with: pip install -e ".[all]"') from exc
    lora = read_mlx(adapter)
    source = ModelSource(base, archs=(*SUPPORTED_ARCHS, *TEXT_ARCHS))
    check_fits(lora, source)
    if fmt == "peft":
        return write_peft(lora, out, base_model=str(base)), lora
    text = source.text_config
    result = write_gguf_lora(lora, out, n_layers=int(text["num_hidden_layers"]),
                             model_type=str(source.config.get("model_type", "qwen2_vl")),
                             n_heads=text.get("num_attention_heads"),
                             n_kv_heads=text.get("num_key_value_heads", text.get("num_attention_heads")))
    return result, lora