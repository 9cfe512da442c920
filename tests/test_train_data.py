"""Trajectories to training samples: which tokens carry loss, token by token."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from t3edge.conversation import trajectory_messages
from t3edge.images import ImagePolicy
from t3edge.protocol import observation_message
from t3edge.jsonl import JsonlWriter
from t3edge.mmtraj import from_mmtraj, to_mmtraj
from t3edge.trajectory import Attachment, Step, Task, Trajectory

SYSTEM = "You are an agent that writes Python to use tools."


def make_traj(tid: str, image: Path | None, n_steps: int = 3) -> Trajectory:
    steps = []
    for i in range(n_steps):
        last = i == n_steps - 1
        code = 'final_answer("4")' if last else f'x = ocr(image_path="p.png")\nprint(x[{i}])'
        steps.append(Step(
            index=i, raw_output=f"Thought: step {i}.\nCode:\n```py\n{code}\n```<end_action>",
            feedback=None if last else observation_message(i, f"value {i}"),
        ))
    atts = [Attachment(path=str(image), kind="image")] if image else []
    return Trajectory(task=Task(id=tid, query="How many cats are there?", attachments=atts),
                      system_prompt=SYSTEM, steps=steps)


@pytest.fixture(scope="module")
def loaded(request: pytest.FixtureRequest):
    """(model, processor, folder) per tiny architecture, loaded once per module."""
    from mlx_vlm import load

    cache: dict[Path, tuple] = {}

    def get(path: Path):
        if path not in cache:
            cache[path] = (*load(str(path)), path)
        return cache[path]

    return get


def encoder_for(loaded_model, image_root: Path | None = None):
    from t3edge.train.data import SampleEncoder

    model, processor, path = loaded_model
    return SampleEncoder(processor, model.config, ImagePolicy.for_model(path), image_root=image_root)


def expected_targets(ids: np.ndarray, tokenizer) -> np.ndarray:
    """ChatML by token ids: every token after `<|im_start|>assistant\\n` up to its `<|im_end|>`."""
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    header = tokenizer("assistant\n", add_special_tokens=False)["input_ids"]
    out = np.zeros(len(ids), dtype=bool)
    i = 0
    while i < len(ids):
        if ids[i] == start and list(ids[i + 1:i + 1 + len(header)]) == header:
            j = i + 1 + len(header)
            while ids[j] != end:
                out[j] = True
                j += 1
            out[j] = True  # the end-of-turn token is a target too
            i = j
        i += 1
    return out


def test_masks_every_assistant_turn_token_by_token(tiny_model: Path, test_image: Path, loaded) -> None:
    enc = encoder_for(loaded(tiny_model))
    traj = make_traj("a", test_image, n_steps=3)
    sample = enc.encode(traj)
    tok = enc.tokenizer
    assert np.array_equal(sample.targets, expected_targets(sample.input_ids, tok))
    # The supervised text is exactly each assistant turn followed by its end-of-turn token.
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    pieces, cur = [], []
    for t, on in zip(sample.input_ids, sample.targets):
        if on:
            cur.append(int(t))
            if t == end_id:
                pieces.append(tok.decode(cur))
                cur = []
    assert pieces == [s.raw_output + "<|im_end|>" for s in traj.steps]
    # System, task, image and observation tokens carry no loss.
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    assert (sample.input_ids == image_id).sum() == ImagePolicy.for_model(tiny_model).tokens(224, 224)
    assert not sample.targets[sample.input_ids == image_id].any()
    masked_text = tok.decode(sample.input_ids[~sample.targets])
    assert SYSTEM in masked_text and "Task: How many cats" in masked_text and "value 1" in masked_text
    assert "Thought" not in masked_text


def test_ids_match_the_processor_and_the_inference_prompt(tiny_model: Path, test_image: Path,
                                                          loaded) -> None:
    """Training tokens equal what the processor makes of the prompt the MLX backend renders."""
    from t3edge.loading import load_backend

    _, processor, _ = loaded(tiny_model)
    enc = encoder_for(loaded(tiny_model))
    traj = make_traj("b", test_image, n_steps=2)
    sample = enc.encode(traj)
    messages = trajectory_messages(traj)
    full = processor(text=[enc.render(messages)], images=sample.images, return_tensors="np")
    assert np.array_equal(full["input_ids"][0], sample.input_ids)

    backend = load_backend(str(tiny_model), backend="mlx")
    prompt = backend.render(messages[:4])  # system, task, step 0, observation: the agent's next call
    assert prompt == enc.render(messages[:4], generation_prompt=True)
    ids = processor(text=[prompt], images=backend.prepared_images(messages[:4]), return_tensors="np")
    n = ids["input_ids"].shape[1]
    assert np.array_equal(ids["input_ids"][0], sample.input_ids[:n])
    assert sample.targets[n]  # the assistant turn the agent would generate next is a target
    assert not sample.targets[:n][-3:].any()


def test_released_mmtraj_record(tiny_qwen2_vl: Path, test_image: Path, tmp_path: Path, loaded) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "cat.png").write_bytes(test_image.read_bytes())
    record = {
        "id": "abcd1234",
        "image": {"<image_00>": "files/cat.png"},
        "system-prompt": SYSTEM,
        "answer": "2",
        "conversations": [
            {"role": "user", "content": "<image_00>\nTask: How many cats are in the image?"},
            {"role": "assistant", "content": "Thought: Count.\nCode:\n```py\nprint(objectlocation(object='cat', image_path='files/cat.png'))\n```<end_action>"},
            {"role": "user", "content": "[OUTPUT OF STEP 0] -> Observation:\n[[1, 2, 3, 4], [5, 6, 7, 8]]"},
            {"role": "assistant", "content": "Thought: Two boxes.\nCode:\n```py\nfinal_answer('2')\n```<end_action>"},
        ],
        "correct": "yes",
    }
    data = tmp_path / "mmtraj.jsonl"
    data.write_text(json.dumps(record) + "\n")
    from t3edge.train.data import load_trajectories

    [traj] = load_trajectories(data)
    enc = encoder_for(loaded(tiny_qwen2_vl))
    sample = enc.encode(traj)
    tok = enc.tokenizer
    assert np.array_equal(sample.targets, expected_targets(sample.input_ids, tok))
    supervised = tok.decode(sample.input_ids[sample.targets])
    assert supervised == "".join(t["content"] + "<|im_end|>" for t in record["conversations"][1::2])
    assert len(sample.images) == 1
    text = tok.decode(sample.input_ids)
    assert "Task: How many cats are in the image?" in text and "<image_00>" not in text


def test_our_format_and_mmtraj_render_the_same(tiny_qwen2_vl: Path, test_image: Path, tmp_path: Path,
                                               loaded) -> None:
    from t3edge.train.data import load_trajectories

    ours = make_traj("c", test_image, n_steps=3)
    with JsonlWriter(tmp_path / "ours.jsonl") as w:
        w.write(ours)
    with JsonlWriter(tmp_path / "mm.jsonl") as w:
        w.write(to_mmtraj(ours).dump())
    a = load_trajectories(tmp_path / "ours.jsonl")[0]
    b = load_trajectories(tmp_path / "mm.jsonl", image_root="/")[0]
    enc = encoder_for(loaded(tiny_qwen2_vl))
    sa, sb = enc.encode(a), enc.encode(b)
    assert np.array_equal(sa.input_ids, sb.input_ids)
    assert np.array_equal(sa.targets, sb.targets)
    assert from_mmtraj(to_mmtraj(ours)).task.query == ours.task.query


def test_prepare_drops_and_splits(tiny_qwen2_vl: Path, test_image: Path, loaded) -> None:
    from t3edge.train.data import is_valid_split, length_histogram, prepare

    enc = encoder_for(loaded(tiny_qwen2_vl))
    trajs = [make_traj(f"t{i}", test_image if i % 2 else None, n_steps=2 + i % 3) for i in range(12)]
    trajs.append(make_traj("missing", Path("/nonexistent/x.png")))
    trajs.append(make_traj("no-steps", None, n_steps=0))
    stray = make_traj("stray-image-token", None)
    stray.task.query = "What is <|image_pad|> here?"
    trajs.append(stray)
    lengths = {t.task.id: enc.encode(t).length for t in trajs[:12]}
    limit = sorted(lengths.values())[8]
    prep = prepare(trajs, enc, max_length=limit, valid_fraction=0.3)
    too_long = sum(v > limit for v in lengths.values())
    assert prep.dropped_too_long == too_long > 0
    assert prep.dropped_no_target == 1
    assert [s.split(":")[0] for s in prep.dropped_unreadable] == ["missing", "stray-image-token"]
    kept = prep.train + prep.valid
    assert len(kept) == 12 - too_long
    assert all(s.length <= limit for s in kept)
    assert {s.sample_id for s in prep.valid} == {s.sample_id for s in kept if is_valid_split(s.sample_id, 0.3)}
    assert prep.total_tokens == sum(s.length for s in kept)
    assert prep.supervised_tokens == sum(s.supervised for s in kept)
    assert 0 < prep.supervised_tokens < prep.total_tokens
    hist = length_histogram(prep.lengths, bins=4)
    assert sum(c for _, _, c in hist) == len(kept)


def test_a_split_never_leaves_nothing_to_train_on(tiny_qwen2_vl: Path, loaded) -> None:
    from t3edge.train.data import is_valid_split, prepare

    enc = encoder_for(loaded(tiny_qwen2_vl))
    held_out = [f"t{i}" for i in range(200) if is_valid_split(f"t{i}", 0.1)][:3]
    one = prepare([make_traj(held_out[0], None)], enc, max_length=4096, valid_fraction=0.1)
    assert [s.sample_id for s in one.train] == held_out[:1] and one.valid == []
    three = prepare([make_traj(i, None) for i in held_out], enc, max_length=4096, valid_fraction=0.1)
    assert len(three.train) == 2 and len(three.valid) == 1


def test_bad_records_are_reported(tmp_path: Path) -> None:
    from t3edge.errors import BadInput
    from t3edge.train.data import load_trajectories
    from t3edge.jsonl import BadLine

    path = tmp_path / "bad.jsonl"
    path.write_text('{"neither": 1}\n')
    with pytest.warns(BadLine), pytest.raises(BadInput, match="no trajectories"):
        load_trajectories(path)
