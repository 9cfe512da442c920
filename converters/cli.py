"""`t3edge convert ...`: HF -> MLX, HF -> GGUF (+ mmproj), GGUF -> MLX (+ a parity check),
GGUF quantization, LoRA bridges, fusing, and inspecting/validating checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from converters.gguf_write import OUT_TYPES

console = Console()


@click.group()
def convert() -> None:
    """Convert models and adapters between Hugging Face, MLX, GGUF and PEFT."""


@convert.command("mlx")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--q-bits", type=click.Choice(["4", "8"]), default=None, help="quantize the language model")
@click.option("--group-size", type=int, default=64, show_default=True, help="quantization group size")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32"]), default=None,
              help="dtype of unquantized weights (default: the checkpoint's)")
def mlx_cmd(src: str, out: str, q_bits: str | None, group_size: int, dtype: str | None) -> None:
    """Hugging Face folder SRC -> MLX folder OUT (mlx-vlm's converter)."""
    from converters.mlx import convert_to_mlx

    with console.status("converting with mlx-vlm"):
        path = convert_to_mlx(src, out, q_bits=int(q_bits) if q_bits else None, group_size=group_size,
                              dtype=dtype)
    console.print(f"[green]wrote[/] {escape(str(path))}")


@convert.command("gguf")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--outtype", type=click.Choice(list(OUT_TYPES)), default="f16", show_default=True)
@click.option("--name", default=None, help="model name in the files (default: SRC's folder name)")
def gguf_cmd(src: str, out_dir: str, outtype: str, name: str | None) -> None:
    """Hugging Face (or MLX) folder SRC -> text GGUF + mmproj GGUF in OUT_DIR, without torch."""
    from converters.hf_to_gguf import convert_to_gguf, planned_tensor_count

    total = planned_tensor_count(src, outtype)  # type: ignore[arg-type]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("writing tensors", total=total)
        pair = convert_to_gguf(src, out_dir, outtype, name=name,  # type: ignore[arg-type]
                               on_tensor=lambda _t: progress.advance(task))
    console.print(f"[green]model [/] {escape(str(pair.model))}")
    console.print(f"[green]mmproj[/] {escape(str(pair.mmproj))}")


@convert.command("from-gguf")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--dequantize", is_flag=True, help="write float16 weights instead of keeping Q4_0/Q4_1/Q5/Q8_0 blocks")
@click.option("--chat-template", "template_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="a Jinja chat template to use instead of the GGUF's")
def from_gguf_cmd(src: str, out: str, dequantize: bool, template_file: str | None) -> None:
    """Text-model GGUF SRC (llama, gemma3) -> MLX folder OUT for mlx-lm and t3edge's MLX backend."""
    from converters.from_gguf import convert as convert_gguf
    from converters.from_gguf import planned_tensor_count
    from converters.lora import new_folder

    total = planned_tensor_count(src, dequantize=dequantize)  # a bad file or an unsupported arch fails here
    new_folder(out)  # and a folder holding files here, before any progress is shown
    template = Path(template_file).read_text() if template_file else None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("writing tensors", total=total)
        done = convert_gguf(src, out, dequantize=dequantize, chat_template=template,
                            on_tensor=lambda _t: progress.advance(task))
    kept = ", ".join(f"{k} x{v}" for k, v in sorted(done.kept.items())) or "none"
    floats = ", ".join(f"{k} x{v}" for k, v in sorted(done.dequantized.items())) or "none"
    console.print(f"kept quantized: {kept}; dequantized: {escape(floats)}")
    if done.chat_template == "family":
        console.print(f"[yellow]the GGUF has no chat template[/]: wrote the {done.arch} family's "
                      "(give --chat-template FILE for another)")
    console.print(f"[green]wrote[/] {escape(str(done.out))} ({done.arch}, {done.seconds:.1f} s)")


@convert.command("parity")
@click.argument("gguf", type=click.Path(exists=True, dir_okay=False))
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--prompt", default=None, help="the user turn (default: a short fixed one)")
@click.option("--trajectory", type=click.Path(exists=True, dir_okay=False), default=None,
              help="a trajectory JSONL: the prompt is its first run's system and task turns")
@click.option("--adapter-gguf", type=click.Path(exists=True, dir_okay=False), default=None,
              help="a GGUF LoRA for the llama.cpp side (with --adapter-mlx, the same adapter)")
@click.option("--adapter-mlx", type=click.Path(exists=True, file_okay=False), default=None,
              help="the MLX adapter folder for the MLX side")
@click.option("--tokens", type=click.IntRange(1, 256), default=12, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def parity_cmd(gguf: str, folder: str, prompt: str | None, trajectory: str | None, adapter_gguf: str | None,
               adapter_mlx: str | None, tokens: int, as_json: bool) -> None:
    """Compare GGUF in llama.cpp with its MLX conversion FOLDER (each with a LoRA, if given):
    greedy tokens and first logits."""
    from converters.parity import check_parity
    from t3edge.backends.base import Message
    from t3edge.blas import relaunch_with_fast_blas

    if (adapter_gguf is None) != (adapter_mlx is None):
        raise click.UsageError("give both --adapter-gguf and --adapter-mlx, or neither")
    relaunch_with_fast_blas()  # MLX's float matmuls on a Linux CPU
    messages = [Message("user", prompt)] if prompt else None
    if trajectory is not None:
        from t3edge.conversation import trajectory_messages
        from t3edge.trajectory import read_trajectories

        first = next(iter(read_trajectories(trajectory)), None)
        if first is None:
            raise click.UsageError(f"{trajectory} holds no trajectory")
        messages = trajectory_messages(first)[:2]
    with console.status("running llama.cpp and MLX"):
        report = check_parity(gguf, folder, messages, n_tokens=tokens, adapter_gguf=adapter_gguf,
                              adapter_mlx=adapter_mlx)
    if as_json:
        click.echo(report.to_json())
    else:
        same = "[green]equal[/]" if report.tokens_equal else "[red]different[/]"
        console.print(f"prompt tokens: {report.prompt_tokens} ({'equal' if report.prompt_equal else 'different'}); "
                      f"greedy tokens ({tokens}): {same}")
        console.print(f"first-position logits: max abs diff {report.max_abs:.4g}, "
                      f"relative to the largest logit {report.max_rel:.3g}")
    if not report.tokens_equal:
        raise click.exceptions.Exit(1)


@convert.command("quantize")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--type", "qtype", type=click.Choice(["q4_k_m", "q5_k_m", "q8_0"]), default="q4_k_m",
              show_default=True)
@click.option("--threads", type=int, default=None, help="quantizer threads (default: all cores)")
def quantize_cmd(src: str, out: str, qtype: str, threads: int | None) -> None:
    """Quantize a text-model GGUF with llama.cpp's quantizer (keep the mmproj as it is)."""
    from converters.quantize import quantize_gguf

    with console.status(f"quantizing to {qtype}"):
        path = quantize_gguf(src, out, qtype, threads=threads)
    console.print(f"[green]wrote[/] {escape(str(path))}")


@convert.group("lora")
def lora_group() -> None:
    """LoRA adapters: MLX <-> PEFT, and either -> GGUF for llama.cpp."""


@lora_group.command("to-peft")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--base-model", default=None, help="recorded as base_model_name_or_path")
def lora_to_peft(src: str, out: str, base_model: str | None) -> None:
    """MLX adapter folder SRC -> PEFT adapter folder OUT."""
    from converters.lora import read_mlx, write_peft

    adapter = read_mlx(src)
    write_peft(adapter, out, base_model=base_model)
    console.print(f"[green]wrote[/] {escape(out)} ({len(adapter.layers)} layers, rank {adapter.rank}, "
                  f"alpha {adapter.alpha:g})")


@lora_group.command("to-mlx")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
def lora_to_mlx(src: str, out: str) -> None:
    """PEFT adapter folder SRC -> MLX adapter folder OUT (loads with mlx-vlm adapter_path)."""
    from converters.lora import read_peft, write_mlx

    adapter = read_peft(src)
    write_mlx(adapter, out)
    console.print(f"[green]wrote[/] {escape(out)} ({len(adapter.layers)} layers, scale {adapter.scale:g})")


@lora_group.command("to-gguf")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--base", "base", type=click.Path(exists=True), required=True,
              help="the base model: Hugging Face/MLX folder or its text GGUF (shapes are checked)")
def lora_to_gguf(src: str, out: str, base: str) -> None:
    """MLX or PEFT adapter SRC -> GGUF LoRA OUT for llama.cpp (lora_path / --adapter)."""
    from converters.lora import check_fits, read_any, write_gguf_lora
    from converters.source import ModelSource
    from t3edge.gguf_check import check_gguf, check_lora_fits

    adapter = read_any(src)
    if Path(base).is_dir():
        source = ModelSource(base)
        check_fits(adapter, source)
        path = write_gguf_lora(adapter, out, n_layers=int(source.text_config["num_hidden_layers"]))
    else:
        model = check_gguf(base, expect_kind="model")
        layers = int(model.metadata[f"{model.architecture}.block_count"])
        path = write_gguf_lora(adapter, out, n_layers=layers)
        try:
            check_lora_fits(model, check_gguf(path, expect_kind="adapter"))
        except Exception:
            path.unlink()
            raise
    console.print(f"[green]wrote[/] {escape(str(path))}")


@convert.command("fuse")
@click.argument("base", type=click.Path(exists=True, file_okay=False))
@click.argument("adapter", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
def fuse_cmd(base: str, adapter: str, out: str) -> None:
    """Fuse ADAPTER (MLX or PEFT) into BASE; write a Hugging Face folder OUT."""
    from converters.fuse import fuse

    with console.status("fusing"):
        path = fuse(base, adapter, out)
    console.print(f"[green]wrote[/] {escape(str(path))}")


@convert.command("inspect")
@click.argument("path", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def inspect_cmd(path: str, as_json: bool) -> None:
    """Validate and summarize a GGUF file or a safetensors folder (model or adapter)."""
    from converters.inspect import inspect_path

    s = inspect_path(path)
    if as_json:
        click.echo(json.dumps({"path": str(s.path), "format": s.format, "kind": s.kind,
                               "architecture": s.architecture, "tensors": s.tensor_count,
                               "size_bytes": s.size_bytes, "dtypes": s.dtypes,
                               "metadata": {k: v if isinstance(v, (int, float, str, bool, list, dict))
                                            else repr(v) for k, v in s.metadata.items()}}, indent=2))
        return
    table = Table(title=escape(str(s.path)), show_header=False)
    for key, value in (("format", s.format), ("kind", s.kind), ("architecture", s.architecture),
                       ("tensors", s.tensor_count), ("size", f"{s.size_bytes / 1e6:.1f} MB"),
                       ("dtypes", ", ".join(f"{k} x{v}" for k, v in sorted(s.dtypes.items())))):
        table.add_row(key, escape(str(value)))
    for key, value in s.metadata.items():
        table.add_row(escape(key), escape(_short(value)))
    console.print(table)
    console.print("[green]valid[/]")


def _short(value: object, limit: int = 120) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"
