"""Training samples of chats: a follow-up run is rendered after its whole chat, and only its own
assistant turns carry loss."""

from __future__ import annotations

from pathlib import Path

from mlx_vlm import load

from t3edge.images import ImagePolicy
from t3edge.train.data import SampleEncoder, prepare
from t3edge.trajectory import Step, Task, Trajectory

SYSTEM = "You are an agent that writes Python to use tools."


def _run(tid: str, query: str, answer: str, continues: list[str]) -> Trajectory:
    step = Step(index=0, raw_output=f'Thought: easy.\nCode:\n```py\nfinal_answer("{answer}")\n```<end_action>')
    return Trajectory(task=Task(id=tid, query=query), system_prompt=SYSTEM, steps=[step],
                      final_answer=answer, ended="final_answer", continues=continues)


def test_follow_up_trains_on_its_own_turns_after_its_chat(tiny_qwen2_vl: Path) -> None:
    model, processor = load(str(tiny_qwen2_vl))
    encoder = SampleEncoder(processor, model.config, ImagePolicy.for_model(tiny_qwen2_vl))
    first = _run("c1", "How many cats?", "3", [])
    second = _run("c2", "And how many are red?", "1", ["c1"])
    orphan = _run("c9", "Which one?", "x", ["gone"])
    data = prepare([first, second, orphan], encoder, max_length=4096)

    assert [i.sample_id for i in data.train] == ["c1", "c2"]
    assert len(data.dropped_unreadable) == 1 and "c9" in data.dropped_unreadable[0]
    alone, chat = data.train[0].tokens, data.train[1].tokens
    assert list(chat.input_ids[: alone.length - 1]) == list(alone.input_ids[: alone.length - 1])  # the chat comes first
    tok = processor.tokenizer
    supervised = tok.decode(chat.input_ids[chat.targets])
    assert 'final_answer("1")' in supervised and 'final_answer("3")' not in supervised
    assert tok.decode(chat.input_ids).count("Task:") == 2
    assert data.messages(1)[-1].role == "assistant" and len(data.messages(1)) > len(data.messages(0))
