"""LoRA / QLoRA training on the tiny model: it learns, its adapter drives the agent's backend,
gradient accumulation equals a bigger batch, and the run leaves metrics, a loss curve and
checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_train_data import make_traj

from t3edge.jsonl import JsonlWriter

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]


def write_data(path: Path, n: int, image: Path | None) -> Path:
    with JsonlWriter(path) as w:
        for i in range(n):
            w.write(make_traj(f"t{i}", image if image is not None and i % 2 == 0 else None, n_steps=2))
    return path


def config(model: Path, data: Path, out: Path, **kw):
    from t3edge.train.config import TrainConfig

    base = {"model": str(model), "data": [str(data)], "out": str(out), "iters": 4,
            "learning_rate": 2e-3, "schedule": "constant", "steps_per_eval": None,
            "steps_per_save": 1000, "valid_fraction": 0.0,
            "lora": {"rank": 16, "alpha": 32, "dropout": 0.0, "target_modules": ALL_LINEAR}}
    base.update(kw)
    return TrainConfig.model_validate(base)


@pytest.fixture(scope="module")
def learned(tiny_qwen2_vl: Path, test_image: Path, tmp_path_factory: pytest.TempPathFactory):
    """A run that learns a fixed trajectory format (module-scoped: trained once)."""
    from t3edge.train.trainer import train

    tmp = tmp_path_factory.mktemp("learned")
    data = write_data(tmp / "data.jsonl", 8, test_image)
    cfg = config(tiny_qwen2_vl, data, tmp / "run", iters=80, warmup_steps=5, steps_per_eval=40,
                 steps_per_save=40, valid_fraction=0.2)
    records: list[dict] = []
    adapter = train(cfg, progress=False, on_step=records.append)
    return adapter, records


@pytest.mark.slow
def test_training_drives_the_loss_down(learned) -> None:
    adapter, records = learned
    run = adapter.parent
    losses = [r["loss"] for r in records]
    assert len(losses) == 80
    assert losses[0] > 4.0
    assert np.mean(losses[-10:]) < 0.1 * losses[0]
    assert [r["step"] for r in records if "val_loss" in r] == [40, 80]
    assert records[-1]["val_loss"] < 0.5 * losses[0]
    # Warmup: the learning rate climbs linearly to its peak, then stays (constant schedule).
    assert [round(r["learning_rate"], 6) for r in records[:6]] == [0.0004, 0.0008, 0.0012, 0.0016, 0.002, 0.002]
    assert all(r["tokens_per_second"] > 0 and r["peak_memory_gb"] > 0 for r in records)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in lines] == losses
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000040", "step-0000080"]
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["lora_parameters"]["scale"] == 2.0 and cfg["lora_parameters"]["rank"] == 16


@pytest.mark.slow
def test_adapter_loads_in_the_backend_and_changes_its_output(learned, tiny_qwen2_vl: Path) -> None:
    from test_train_data import SYSTEM

    from t3edge.loading import load_backend
    from t3edge.backends.base import GenerationConfig
    from t3edge.conversation import first_messages
    from t3edge.protocol import STOP_STRINGS

    adapter, _ = learned
    messages = first_messages(SYSTEM, "Task: How many cats are there?")
    gen = GenerationConfig(max_tokens=24, stop=STOP_STRINGS)
    plain = load_backend(str(tiny_qwen2_vl), backend="mlx").generate(messages, gen)
    tuned = load_backend(str(tiny_qwen2_vl), backend="mlx", adapter=str(adapter)).generate(messages, gen)
    assert tuned.text != plain.text
    trained = ("Thought: step", "ocr(image_path", "final_answer(")  # pieces of the trained turns
    assert any(t in tuned.text for t in trained), tuned.text
    assert not any(t in plain.text for t in trained)


@pytest.mark.slow
def test_grad_accumulation_equals_a_bigger_batch(tiny_qwen2_vl: Path, test_image: Path, tmp_path: Path) -> None:
    """batch 2 x 1 micro-batch and batch 1 x 2 micro-batches give the same update."""
    import mlx.core as mx

    from t3edge.train.trainer import train

    data = write_data(tmp_path / "data.jsonl", 6, test_image)
    a = train(config(tiny_qwen2_vl, data, tmp_path / "a", iters=3, batch_size=2), progress=False)
    b = train(config(tiny_qwen2_vl, data, tmp_path / "b", iters=3, batch_size=1, grad_accum=2), progress=False)
    wa = mx.load(str(a / "adapters.safetensors"))
    wb = mx.load(str(b / "adapters.safetensors"))
    assert wa.keys() == wb.keys()
    assert any(float(mx.abs(v).max()) > 0 for k, v in wa.items() if k.endswith("lora_b"))
    for k in wa:
        # padding a batch of 2 reorders float sums: differences ~3e-5, while a wrong accumulation
        # moves weights by ~lr (2e-3) per step
        np.testing.assert_allclose(np.array(wa[k]), np.array(wb[k]), atol=2e-4, err_msg=k)


@pytest.mark.slow
def test_qlora_on_a_quantized_base(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    """QLoRA: a 4-bit language model (vision tower in float) under a float adapter; mlx-vlm
    restores the base quantization when it loads the adapter."""
    from mlx import nn
    from mlx_vlm import load

    from t3edge.train.trainer import train

    data = write_data(tmp_path / "data.jsonl", 4, None)
    records: list[dict] = []
    adapter = train(config(tiny_qwen2_vl, data, tmp_path / "q", iters=12, quantize_bits=4,
                           lora={"rank": 8, "alpha": 16, "dropout": 0.05}),
                    progress=False, on_step=records.append)
    assert records[-1]["loss"] < records[0]["loss"]
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["base_quantization"] and all(v["bits"] == 4 for v in cfg["base_quantization"].values())
    model, _ = load(str(tiny_qwen2_vl), adapter_path=str(adapter))
    q_proj = model.language_model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.linear, nn.QuantizedLinear)
    assert not any(isinstance(m, nn.QuantizedLinear) for _, m in model.vision_tower.named_modules())
    # Fused: 4-bit again by default (the merged weights are re-quantized), or exact with the adapted layers in float.
    from test_train_cli import logits

    from t3edge.train.model import fuse

    fused = fuse(tiny_qwen2_vl, adapter, tmp_path / "fused")
    assert json.loads((fused / "config.json").read_text())["quantization"]["bits"] == 4
    assert logits(fused).shape == logits(tiny_qwen2_vl).shape
    exact = fuse(tiny_qwen2_vl, adapter, tmp_path / "exact", dequantize=True)
    np.testing.assert_allclose(logits(exact), logits(tiny_qwen2_vl, adapter), atol=1e-4)


def test_bad_settings_are_one_line_errors(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from t3edge.errors import T3Error
    from t3edge.train.trainer import train

    with pytest.raises(T3Error, match="no training data"):
        train(config(tiny_qwen2_vl, tmp_path / "x.jsonl", tmp_path / "r").model_copy(update={"data": []}))
    data = write_data(tmp_path / "data.jsonl", 2, None)
    with pytest.raises(T3Error, match="no usable training samples"):
        train(config(tiny_qwen2_vl, data, tmp_path / "r", max_length=16), progress=False)
    with pytest.raises(T3Error, match="nothing to resume"):
        train(config(tiny_qwen2_vl, data, tmp_path / "fresh"), resume=True)
    train(config(tiny_qwen2_vl, data, tmp_path / "done", iters=1), progress=False)
    with pytest.raises(T3Error, match="already holds a run"):
        train(config(tiny_qwen2_vl, data, tmp_path / "done", iters=1), progress=False)


@pytest.mark.slow
def test_grad_checkpointing_gives_the_same_update(tiny_qwen2_vl: Path, test_image: Path, tmp_path: Path) -> None:
    import mlx.core as mx
    from mlx_vlm.models.qwen2_vl.language import Qwen2VLDecoderLayer

    from t3edge.train.trainer import train

    data = write_data(tmp_path / "data.jsonl", 4, test_image)
    plain = train(config(tiny_qwen2_vl, data, tmp_path / "a", iters=2), progress=False)
    original = Qwen2VLDecoderLayer.__call__
    try:  # checkpointing patches the layer class: undo it for the tests that follow
        ckpt = train(config(tiny_qwen2_vl, data, tmp_path / "b", iters=2, grad_checkpoint=True), progress=False)
        assert Qwen2VLDecoderLayer.__call__ is not original
    finally:
        Qwen2VLDecoderLayer.__call__ = original
    wa, wb = mx.load(str(plain / "adapters.safetensors")), mx.load(str(ckpt / "adapters.safetensors"))
    for k in wa:
        np.testing.assert_allclose(np.array(wa[k]), np.array(wb[k]), atol=1e-5, err_msg=k)
