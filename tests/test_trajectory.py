"""The trajectory schema: JSONL durability and the MM-Traj bridge."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from t3edge.errors import T3Error
from t3edge.jsonl import BadLine, JsonlWriter, iter_jsonl
from t3edge.mmtraj import MMTrajRecord, from_mmtraj, to_mmtraj
from t3edge.trajectory import Attachment, Step, Task, Trajectory, file_kind, read_trajectories

SYSTEM = "You are an expert assistant who can solve any task using code blobs."
STEP0 = 'Thought: I read the receipt.\nCode:\n```py\ntext = ocr(image_path="r.jpg")\nprint(text)\n```<end_action>'
OBS0 = "[OUTPUT OF STEP 0] -> Observation:\n['Total 12.50']"
STEP1 = 'Thought: Done.\nCode:\n```py\nfinal_answer("12.50")\n```<end_action>'


def _traj(i: int) -> Trajectory:
    return Trajectory(
        task=Task(id=f"t{i}", query=f"question {i}", attachments=[Attachment(path="a.png", kind="image")]),
        steps=[Step(index=0, raw_output=STEP0, thought="I read the receipt.", code="x", tokens_in=10)],
        final_answer=i, ended="final_answer", model="tiny", backend="replay",
    )


def test_jsonl_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    with JsonlWriter(path) as w:
        for i in range(3):
            w.write(_traj(i))
    back = list(read_trajectories(path))
    assert [t.task.id for t in back] == ["t0", "t1", "t2"]
    assert back[1] == _traj(1)


def test_partial_last_line_is_reported_and_skipped_and_never_fuses(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    with JsonlWriter(path) as w:
        w.write(_traj(0))
        w.write(_traj(1))
    # a writer killed mid-record: half a line, no newline
    line = json.dumps(_traj(2).model_dump(mode="json"))
    with open(path, "a") as fh:
        fh.write(line[: len(line) // 2])
    with JsonlWriter(path) as w:  # a resumed writer appends after the broken line
        w.write(_traj(3))
    with pytest.warns(BadLine, match="skipped an unreadable line"):
        ids = [t.task.id for t in read_trajectories(path)]
    assert ids == ["t0", "t1", "t3"]


def test_bad_lines_can_raise(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(T3Error, match="x.jsonl:2"):
        list(iter_jsonl(path, on_bad_line="raise"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(iter_jsonl(path, on_bad_line="skip")) == [{"a": 1}]


def test_json_that_is_not_a_trajectory_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"task": 3}\n' + json.dumps(_traj(0).model_dump(mode="json")) + "\n")
    with pytest.warns(BadLine, match="not a trajectory"):
        assert [t.task.id for t in read_trajectories(path)] == ["t0"]


def test_attachment_from_path(tmp_path: Path) -> None:
    f = tmp_path / "sheet.XLSX"
    f.write_bytes(b"abc")
    a = Attachment.from_path(f)
    assert a.kind == "xlsx" and a.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_kind("x.JPG") == "image" and file_kind("clip.mp4") == "video"
    with pytest.raises(T3Error, match="attachment not found"):
        Attachment.from_path(tmp_path / "missing.pdf")


RECORD_STR = {
    "id": "a1b2c3d4",
    "image": "files/coco/0001.jpg",
    "system-prompt": SYSTEM,
    "answer": "12.50",
    "conversations": [
        {"role": "user", "content": "<image>\nTask: What is the total?\nAttachment: files/coco/0001.jpg"},
        {"role": "assistant", "content": STEP0},
        {"role": "user", "content": OBS0},
        {"role": "assistant", "content": STEP1},
    ],
}
RECORD_DICT = {
    "id": "e5f6a7b8",
    "image": {"<image_00>": "files/a.jpg", "<image_01>": "files/b.png"},
    "system-prompt": SYSTEM,
    "answer": ["red", 3],
    "conversations": [
        {"role": "user", "content": "<image_00>\n<image_01>\nTask: Compare the pictures."},
        {"role": "assistant", "content": "Thought: no code here"},
        {"role": "user", "content": "[OUTPUT OF STEP 0] -> Error:\nNo code block found.\nNow let's retry: take care not to repeat previous errors! If you have retried several times, try a completely different approach."},
        {"role": "assistant", "content": STEP1},
    ],
    "correct": "yes",
    "traj_verification": '{"thought": "tools fit the task", "correct": "yes"}',
}
RECORD_NONE = {
    "id": "00000000",
    "system-prompt": SYSTEM,
    "answer": 42,
    "conversations": [
        {"role": "user", "content": "Task: What is 6 times 7?"},
        {"role": "assistant", "content": STEP1},
    ],
}


@pytest.mark.parametrize("record", [RECORD_STR, RECORD_DICT, RECORD_NONE], ids=["str", "dict", "none"])
def test_mmtraj_roundtrip_is_lossless(record: dict) -> None:
    traj = from_mmtraj(record)
    back = to_mmtraj(traj).dump()
    assert back == record
    # and through our own JSONL form too
    again = Trajectory.model_validate_json(traj.model_dump_json())
    assert to_mmtraj(again).dump() == record


def test_mmtraj_import_fields() -> None:
    traj = from_mmtraj(RECORD_STR, root="/data/mat")
    assert traj.task.query == "What is the total?"
    assert traj.task.attachments[0].path == "/data/mat/files/coco/0001.jpg"
    assert traj.task.attachments[0].placeholder == "<image>"
    assert traj.system_prompt == SYSTEM and traj.final_answer == "12.50"
    assert [s.code for s in traj.steps] == ['text = ocr(image_path="r.jpg")\nprint(text)', 'final_answer("12.50")']
    assert traj.steps[0].observation == "['Total 12.50']" and traj.steps[1].feedback is None
    assert to_mmtraj(traj, root="/data/mat").dump() == RECORD_STR

    multi = from_mmtraj(RECORD_DICT)
    assert [a.placeholder for a in multi.task.attachments] == ["<image_00>", "<image_01>"]
    assert multi.steps[0].kind == "parse_error" and multi.steps[0].error == "No code block found."
    assert multi.verdicts["trajectory"].correct is True
    assert multi.verdicts["trajectory"].thought == "tools fit the task"


def test_export_of_our_own_trajectory() -> None:
    traj = Trajectory(
        task=Task(id="q1", query="Count the cats", attachments=[
            Attachment(path="/w/cats.jpg", kind="image"), Attachment(path="/w/t.xlsx", kind="xlsx")]),
        system_prompt=SYSTEM,
        steps=[Step(index=0, raw_output=STEP0, feedback=OBS0), Step(index=1, raw_output=STEP1)],
        final_answer=2,
    )
    rec = to_mmtraj(traj, root="/w").dump()
    assert rec["image"] == "cats.jpg"
    assert rec["conversations"][0]["content"] == "<image>\nTask: Count the cats\nAttachment: /w/cats.jpg; /w/t.xlsx"
    assert [t["role"] for t in rec["conversations"]] == ["user", "assistant", "user", "assistant"]
    assert MMTrajRecord.model_validate(rec).answer == 2


def test_mmtraj_rejects_a_record_without_a_user_turn() -> None:
    with pytest.raises(T3Error, match="must start with a user turn"):
        from_mmtraj({"id": "x", "conversations": [{"role": "assistant", "content": "hi"}]})


def test_records_with_run_facts_in_meta_still_load() -> None:
    """Records of earlier versions kept workspace, continues, error and sandbox in `meta`."""
    old = {"task": {"id": "b", "query": "q"}, "ended": "backend_error",
           "meta": {"workspace": "/w", "continues": ["a"], "error": "device lost",
                    "sandbox": {"landlock_abi": 3, "seccomp": True}, "family": "csv_total"}}
    traj = Trajectory.model_validate(old)
    assert (traj.workspace, traj.continues, traj.error) == ("/w", ["a"], "device lost")
    assert traj.sandbox is not None and traj.sandbox.landlock_abi == 3 and traj.sandbox.seccomp
    assert traj.meta == {"family": "csv_total"}
    assert Trajectory.model_validate_json(traj.model_dump_json()) == traj
