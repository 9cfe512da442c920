"""The flywheel on the real SmolLM2: tasks -> teacher -> LoRA -> export -> evaluation before and
after, resumed after a kill; an OpenAI-compatible teacher through the data engine; and the
exported adapter applied by llama.cpp to the same GGUF the student is served from."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from t3edge.scripted_server import ScriptedOpenAIServer

pytestmark = [pytest.mark.real, pytest.mark.slow]

SMALL = ["--train-tasks", "6", "--test-tasks", "3", "--epochs", "1", "--eval-steps", "2", "--eval-tokens", "96"]


def _flywheel(out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "t3edge", "flywheel", "--out", str(out), *SMALL, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _state(out: Path) -> dict:
    path = out / "flywheel.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def test_the_flywheel_runs_end_to_end_and_resumes_after_a_kill(smollm2_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / "fw"
    proc = _flywheel(out)
    deadline = time.monotonic() + 600
    while "teach" not in _state(out).get("done", {}) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGKILL)  # mid-way: training has started or is about to
    proc.communicate()
    first = _state(out)["done"]
    tasks_made = {p: p.stat().st_mtime_ns for p in (out / "tasks").rglob("tasks.jsonl")}
    taught = (out / "teacher" / "trajectories.jsonl").read_text()

    proc = _flywheel(out)
    stdout, stderr = proc.communicate(timeout=1200)
    assert proc.returncode == 0, stderr[-3000:]
    state = _state(out)
    for stage in ("student", "tasks", "teach"):  # finished stages were not run again
        assert state["done"][stage] == first[stage]
    assert {p: p.stat().st_mtime_ns for p in (out / "tasks").rglob("tasks.jsonl")} == tasks_made
    assert (out / "teacher" / "trajectories.jsonl").read_text() == taught
    assert list(state["done"]) == ["student", "tasks", "teach", "train", "export", "before", "after", "report"]

    report = (out / "report.md").read_text()
    assert "| AnsAcc |" in report and "Held-out families only" in report and "tokens/s" in report
    assert report in stdout and (out / "report.png").stat().st_size > 1000
    assert (out / "adapter" / "adapters.safetensors").is_file() and (out / "adapter.gguf").is_file()
    for which in ("before", "after"):
        summary = json.loads((out / "eval" / which / "summary.json").read_text())
        assert summary["finished"] == 3
    after = json.loads((out / "eval" / "after" / "summary.json").read_text())
    assert after["adapter"] == str(out / "adapter.gguf")

    again = _flywheel(out, "--seed", "1")  # other settings: refused, nothing touched
    _, err = again.communicate(timeout=120)
    assert again.returncode == 1 and "other settings (seed)" in err


def test_an_api_teacher_goes_through_the_data_engine_and_its_verifier(smollm2_gguf: Path, tmp_path: Path) -> None:
    """A scripted OpenAI-compatible teacher: it answers each task with the task's reference steps,
    except one task it gets wrong; the verifier (same server) accepts all. The wrong one is dropped
    by the answer checker; the kept ones carry the student's own system prompt."""
    from t3edge.cli.flywheel import Flywheel, FlywheelSettings
    from t3edge.tasks import load_tasks, make_tasks, reference_outputs

    sample = tmp_path / "preview"
    make_tasks(sample, "train", 4, 0)  # the same tasks the flywheel will make (same seed and split)
    records, _ = load_tasks(sample)
    by_query = {r.query: r for r in records}
    wrong = records[0].id

    def teacher(request: dict) -> str:
        system = request["messages"][0]["content"]
        if "You check how an assistant solved a task" in (system if isinstance(system, str) else ""):
            return json.dumps({"thought": "fine", "correct": True})
        content = request["messages"][1]["content"]
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        task = next(r for q, r in by_query.items() if q in text)
        done = sum(m["role"] == "assistant" for m in request["messages"])
        steps = reference_outputs(task)
        if task.id == wrong:
            return "Thought: I guess.\nCode:\n```py\nfinal_answer('no idea')\n```<end_action>"
        return steps[min(done, len(steps) - 1)]

    with ScriptedOpenAIServer(teacher) as server:
        settings = FlywheelSettings(teacher=f"{server.url}#scripted", train_tasks=4, test_tasks=1)
        fly = Flywheel(tmp_path / "fw", settings)
        fly.make_tasks()
        fly.teach()
    kept = [json.loads(line) for line in fly.trajectories.read_text().splitlines()]
    dropped = [json.loads(line) for line in (fly.trajectories.parent / "dropped.jsonl").read_text().splitlines()]
    assert {k["task"]["id"] for k in kept} == {r.id for r in records} - {wrong}
    assert [d["id"] for d in dropped] == [wrong] and dropped[0]["reason"] == "wrong_answer"
    assert all(k["verdicts"]["trajectory"]["correct"] for k in kept)
    assert {k["system_prompt"] for k in kept} == {fly._student_prompt()}


def tiny_llama(folder: Path, tokenizer_from: Path) -> Path:
    """A random 2-block llama text model with a real tokenizer and chat template (SmolLM2's)."""
    import shutil

    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    hidden, inter, heads, kv, vocab, layers = 64, 128, 4, 2, 49152, 2
    config = {"model_type": "llama", "hidden_size": hidden, "num_hidden_layers": layers, "intermediate_size": inter,
              "num_attention_heads": heads, "num_key_value_heads": kv, "rms_norm_eps": 1e-5, "vocab_size": vocab,
              "rope_theta": 10000.0, "max_position_embeddings": 8192, "tie_word_embeddings": True}
    (folder / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    head = hidden // heads
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    for i in range(layers):
        block = f"model.layers.{i}."
        shapes.update({block + "self_attn.q_proj.weight": (hidden, hidden), block + "self_attn.k_proj.weight": (kv * head, hidden),
                       block + "self_attn.v_proj.weight": (kv * head, hidden), block + "self_attn.o_proj.weight": (hidden, hidden),
                       block + "mlp.gate_proj.weight": (inter, hidden), block + "mlp.up_proj.weight": (inter, hidden),
                       block + "mlp.down_proj.weight": (hidden, inter), block + "input_layernorm.weight": (hidden,),
                       block + "post_attention_layernorm.weight": (hidden,)})
    weights = {name: (1.0 + 0.1 * rng.standard_normal(shape) if len(shape) == 1 else 0.05 * rng.standard_normal(shape))
               .astype(np.float32) for name, shape in shapes.items()}
    save_file(weights, str(folder / "model.safetensors"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_from / name, folder / name)
    return folder


def test_a_text_model_trains_on_task_trajectories(smollm2_gguf: Path, tmp_path: Path) -> None:
    """LoRA through mlx-lm's layers on a text model (a tiny random llama with SmolLM2's tokenizer
    and template): the loss moves, and the adapter is what mlx-lm loads."""
    from converters.from_gguf import convert_from_gguf
    from t3edge.tasks import load_tasks, make_tasks, teach
    from t3edge.train.config import LoraSettings, TrainConfig
    from t3edge.train.trainer import train

    smol = convert_from_gguf(smollm2_gguf, tmp_path / "smol-mlx")
    model = tiny_llama(tmp_path / "tiny-llama", smol)
    make_tasks(tmp_path / "tasks", "train", 3, 0)
    records, _ = load_tasks(tmp_path / "tasks")
    teach(records, tmp_path / "tasks", tmp_path / "taught.jsonl")
    # the same prompt in every run: the test's own folder (its name varies) is not in it
    (tmp_path / "trajs.jsonl").write_text((tmp_path / "taught.jsonl").read_text().replace(str(tmp_path), "/data"))
    cfg = TrainConfig(model=str(model), data=[str(tmp_path / "trajs.jsonl")], out=str(tmp_path / "run"),
                      iters=6, learning_rate=3e-3, valid_fraction=0.0, steps_per_eval=None, seed=0,
                      lora=LoraSettings(rank=8, alpha=16.0, dropout=0.0, num_layers=1))
    adapter = train(cfg, progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0], losses
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["num_layers"] == 1 and "self_attn.q_proj" in config["lora_parameters"]["keys"]
    from mlx_lm import load

    tuned, _ = load(str(model), adapter_path=str(adapter))
    assert sum(1 for name, _ in tuned.named_modules() if name.endswith("q_proj") and "lora" not in name) == 2


def test_an_exported_adapter_gives_llama_cpp_the_same_tokens_as_mlx(smollm2_gguf: Path, tmp_path: Path) -> None:
    """A LoRA on SmolLM2 (MLX layout) exported to a GGUF LoRA: llama.cpp applies it to the same
    GGUF file the student is served from and, on a trajectory prompt, its next-token logits agree
    with MLX's with the adapter (same choice, a few percent apart), and the choice differs from
    the base's, so the LoRA really applies (a wrong q/k row order would break the agreement)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_unflatten

    from converters.from_gguf import convert_from_gguf
    from t3edge.cli.train import export_adapter
    from t3edge.tasks import load_tasks, make_tasks, teach
    from t3edge.train.config import LoraSettings
    from t3edge.train.model import attach_lora, load_base, save_adapter

    floats = convert_from_gguf(smollm2_gguf, tmp_path / "smol-f16", dequantize=True)  # fast on any CPU BLAS
    model, _ = load_base(floats)  # an adapter as training leaves it, with B moved away from zero
    mx.random.seed(0)  # A's initialization and B both fixed, whatever ran before in this process
    attach_lora(model, LoraSettings(rank=4, alpha=8.0, dropout=0.0))
    moved = [(k, 0.15 * mx.random.normal(v.shape)) for k, v in tree_flatten(model.trainable_parameters())
             if k.endswith("lora_b")]
    model.update(tree_unflatten(moved))
    adapter = tmp_path / "adapter"
    save_adapter(model, adapter)
    gguf_lora, _ = export_adapter(adapter, floats, "gguf", tmp_path / "adapter.gguf")
    make_tasks(tmp_path / "tasks", "train", 1, 0)
    records, _ = load_tasks(tmp_path / "tasks")
    teach(records, tmp_path / "tasks", tmp_path / "taught.jsonl")
    # the same prompt in every run: the test's own folder (its name varies) is not in it
    (tmp_path / "trajs.jsonl").write_text((tmp_path / "taught.jsonl").read_text().replace(str(tmp_path), "/data"))

    def parity(*adapters: str) -> dict:
        done = subprocess.run(["t3edge", "convert", "parity", str(smollm2_gguf), str(floats), "--trajectory",
                               str(tmp_path / "trajs.jsonl"), "--json", *adapters],
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode in (0, 1) and done.stdout.strip(), done.stderr[-3000:]
        return json.loads(done.stdout)

    tuned = parity("--adapter-gguf", str(gguf_lora), "--adapter-mlx", str(adapter))
    base = parity()
    # the first position's logits agree (llama.cpp quantizes activations, MLX runs float16: a few
    # percent), and the LoRA changes the answer; later greedy tokens may part at a near-tie, as the
    # base model's own do on some CPUs
    for report in (tuned, base):
        assert report["prompt_equal"] and report["prompt_tokens"] > 400, report  # the whole trajectory
        assert report["argmax_equal"] and report["max_rel"] < 0.05, report
    assert tuned["llama_ids"][0] != base["llama_ids"][0] and tuned["mlx_ids"][0] != base["mlx_ids"][0]
