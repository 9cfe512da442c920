"""The built-in task suite: deterministic generation, disjoint splits, held-out families, the
checkers, and task folders with broken records (counted and named, never a crash)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from t3edge.cli import cli
from t3edge.errors import T3Error
from t3edge.protocol import parse_model_output
from t3edge.tasks import FAMILIES, HELD_OUT, check, load_tasks, make_tasks, read_manifest, reference_outputs
from t3edge.tasks.checkers import as_items, normalize_text, parse_number, parse_size
from t3edge.tasks.families import Draft
from t3edge.tasks.splits import canonical, split_of

ALL = list(FAMILIES)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tasks of every family in test, two of every train family in train (no tool checks:
    the teacher's tests run the real tools)."""
    base = tmp_path_factory.mktemp("tasks")
    make_tasks(base / "test", "test", 2 * len(ALL), seed=7, verify=False)
    make_tasks(base / "train", "train", 2 * (len(ALL) - len(HELD_OUT)), seed=7, verify=False)
    return {"test": base / "test", "train": base / "train", "base": base}


def test_same_seed_same_bytes_and_answers(folders: dict[str, Path]) -> None:
    again = folders["base"] / "again"
    make_tasks(again, "test", 2 * len(ALL), seed=7, verify=False)
    assert _digest(again) == _digest(folders["test"])  # tasks.jsonl and manifest.json included
    other = folders["base"] / "other-seed"
    make_tasks(other, "test", len(ALL), seed=8, verify=False)
    first = {r.id: r.answer for r in load_tasks(folders["test"])[0]}
    changed = [r for r in load_tasks(other)[0] if r.answer != first[r.id]]
    assert len(changed) >= len(ALL) - 2


def test_layout_manifest_and_records(folders: dict[str, Path]) -> None:
    records, problems = load_tasks(folders["test"])
    assert problems == [] and len(records) == 2 * len(ALL)
    assert {r.family for r in records} == set(ALL)
    manifest = read_manifest(folders["test"])
    assert manifest is not None and manifest.seed == 7 and manifest.split == "test"
    assert manifest.n == len(records) and manifest.families == ALL and set(manifest.held_out) == set(HELD_OUT)
    assert manifest.generator_version
    for r in records:
        assert r.split == "test" and r.held_out == (r.family in HELD_OUT)
        assert all(f.startswith(f"files/{r.id}/") for f in r.files)
        assert sorted(p.name for p in (folders["test"] / "files" / r.id).iterdir()) == sorted(
            Path(f).name for f in r.files)
        task = r.task()
        assert all(Path(a.path).is_absolute() and Path(a.path).is_file() for a in task.attachments)
        outputs = reference_outputs(r)
        assert 1 <= len(outputs) <= 4
        parsed = [parse_model_output(o) for o in outputs]
        assert all(p.code and p.thought and p.problem is None for p in parsed)
        assert "final_answer(" in parsed[-1].code and all("final_answer(" not in p.code for p in parsed[:-1])
        for tool in r.tools:  # tools are called with keyword arguments
            assert any(f"{tool}(" in p.code and "=" in p.code.split(f"{tool}(", 1)[1].split(")")[0]
                       for p in parsed)
        if r.tools:  # an answer that comes from a tool's observation is given in its own step
            assert parsed[-1].code.startswith("final_answer(") and parsed[-1].code.count("\n") == 0


def test_splits_share_no_files_and_no_values(folders: dict[str, Path]) -> None:
    train, _ = load_tasks(folders["train"])
    test, _ = load_tasks(folders["test"])
    assert not {r.family for r in train} & set(HELD_OUT)
    assert {r.family for r in test} >= set(HELD_OUT)

    def hashes(folder: Path) -> set[str]:
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in (folder / "files").rglob("*") if p.is_file()}

    assert not hashes(folders["train"]) & hashes(folders["test"])
    train_values = {v for r in train for v in r.values}
    test_values = {v for r in test for v in r.values}
    assert train_values and test_values and not train_values & test_values
    assert all(split_of(v) == "train" for v in train_values)
    assert not {canonical(r.answer) for r in train} & {canonical(r.answer) for r in test}
    for r in train + test:  # the answer is one of the task's partitioned values
        answer = r.answer if isinstance(r.answer, list) else [r.answer]
        assert {canonical(a) for a in answer} <= set(r.values), r.id


def test_held_out_families_cannot_be_made_for_train(tmp_path: Path) -> None:
    with pytest.raises(T3Error, match="held out"):
        make_tasks(tmp_path / "x", "train", 2, seed=0, families=[HELD_OUT[0]])
    with pytest.raises(T3Error, match="unknown task family"):
        make_tasks(tmp_path / "y", "test", 2, seed=0, families=["nope"])
    only = make_tasks(tmp_path / "z", "test", 3, seed=0, families=[HELD_OUT[0]], verify=False)
    assert all(r.held_out and r.family == HELD_OUT[0] for r in only)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(T3Error, match="not a task folder"):
        make_tasks(tmp_path / "mine", "test", 1, seed=0)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def _wrong_answers(record) -> list:
    answer, kind, tol = record.answer, record.check.kind, record.check.tolerance
    if kind == "number":
        return [answer + tol + 0.01, answer - tol - 0.01, answer * 10 + 1, "not a number", None, True,
                f"{answer} or {answer + 1}"]
    if kind == "text":
        return [answer + "X", answer[:-1], "", None, [answer, answer], 42]
    if kind == "size":
        w, h = parse_size(answer)
        return [f"{w + 1}x{h}", f"{w}x{h - 1}", f"{h}x{w}" if w != h else f"{w}x{h + 2}", [w], "big", None]
    wrong = [answer[:-1] or ["nothing"], answer + ["extra"], [a + "s" for a in answer], "", None]
    if kind == "list" and len(answer) > 1:
        wrong.append(list(reversed(answer)))
    return wrong


def _right_answers(record) -> list:
    answer, kind = record.answer, record.check.kind
    if kind == "number":
        return [answer, str(answer), f"{answer + record.check.tolerance / 2}", [answer]]
    if kind == "text":
        return [answer, answer.lower(), f"  {answer.upper()}. ", f'"{answer}"', [answer]]
    if kind == "size":
        w, h = parse_size(answer)
        return [answer, [w, h], (w, h), f"{w} x {h}", f"({w}, {h})", {"width": w, "height": h}]
    right = [answer, [a.upper() for a in answer], str(answer), ", ".join(answer), json.dumps(answer)]
    if kind == "set":
        right.append(list(reversed(answer)))
    return right


def test_every_family_checker_accepts_the_key_and_rejects_wrong_answers(folders: dict[str, Path]) -> None:
    records, _ = load_tasks(folders["test"])
    seen_kinds = set()
    for r in records:
        seen_kinds.add(r.check.kind)
        for good in _right_answers(r):
            assert check(r, good), (r.id, r.answer, good)
        for bad in _wrong_answers(r):
            assert not check(r, bad), (r.id, r.answer, bad)
    assert seen_kinds >= {"number", "text", "size"}


def test_checker_helpers() -> None:
    assert parse_number("$1,234.50") == 1234.5 and parse_number("The total is 23.75.") == 23.75
    assert parse_number("between 2 and 3") is None and parse_number(float("nan")) is None
    assert normalize_text('  "Ana  Ruiz". ') == "ana ruiz"
    assert as_items("apples, kiwis and tea") == ["apples", "kiwis", "tea"]
    assert as_items("['a', 'b']") == ["a", "b"] and as_items(3) is None
    assert parse_size("160 by 120") == (160, 120) and parse_size("160x") is None and parse_size([1.5, 2]) is None


def test_the_verifier_rejects_files_the_tools_do_not_read_back(folders: dict[str, Path]) -> None:
    records, _ = load_tasks(folders["test"])
    ocr = next(r for r in records if r.family == "ocr_code")
    folder = folders["test"] / "files" / ocr.id
    names = [Path(f).name for f in ocr.files]
    right = Draft(ocr.query, names, ocr.answer, ocr.check, ocr.tools, [])
    assert FAMILIES["ocr_code"].verify(folder, right) is None  # the real OCR reads it back
    wrong_answer = ["NOPE"] if isinstance(ocr.answer, list) else "NOPE"
    wrong = Draft(ocr.query, names, wrong_answer, ocr.check, ocr.tools, [])
    assert "ocr read" in FAMILIES["ocr_code"].verify(folder, wrong)


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_missing_files_and_corrupt_keys_are_counted_and_named(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(folders["test"], tmp_path / "broken")
    lines = (folder / "tasks.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    gone = records[0]
    (folder / gone["files"][0]).unlink()
    number = next(r for r in records[1:] if r["check"]["kind"] == "number")
    number["answer"] = "about twelve"
    listed = next(r for r in records if r["check"]["kind"] in ("set", "list", "text") and r is not gone
                  and r is not number)
    del listed["answer"]
    lines = [json.dumps(r) for r in records]
    lines.insert(3, '{"id": "torn", "family": "csv_to')
    lines.insert(5, "[1, 2, 3]")
    (folder / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    usable, problems = load_tasks(folder)
    assert len(usable) == len(records) - 3
    by_id = {p.id: p.reason for p in problems}
    assert "missing" in by_id[gone["id"]] and gone["files"][0] in by_id[gone["id"]]
    assert "corrupt answer key" in by_id[number["id"]] and "not a number" in by_id[number["id"]]
    assert "answer" in by_id[listed["id"]]
    assert sum(p.id is None for p in problems) == 2 and len(problems) == 5
    assert all(str(p).startswith("line ") for p in problems)
    out = CliRunner().invoke(cli, ["tasks", "check", str(folder)])
    assert out.exit_code == 0 and "5 record(s) cannot be used" in out.output and gone["id"] in out.output


def test_a_folder_that_is_not_a_task_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(T3Error, match="not a task folder"):
        load_tasks(tmp_path)
    with pytest.raises(T3Error, match="not found"):
        load_tasks(tmp_path / "nowhere")
    result = CliRunner().invoke(cli, ["tasks", "check", str(tmp_path)])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "not a task folder" in result.output


def test_cli_make(tmp_path: Path) -> None:
    out = tmp_path / "cli-tasks"
    result = CliRunner().invoke(cli, ["tasks", "make", str(out), "--split", "train", "--n", "3", "--seed", "1",
                                      "--family", "csv_total", "--family", "json_field", "--no-progress"])
    assert result.exit_code == 1 and "held out" in result.output and not out.exists()
    result = CliRunner().invoke(cli, ["tasks", "make", str(out), "--split", "train", "--n", "3", "--seed", "1",
                                      "--family", "csv_total", "--family", "pdf_fact", "--no-progress"])
    assert result.exit_code == 0, result.output
    records, _ = load_tasks(out)
    assert [r.id for r in records] == ["train-csv_total-0000", "train-pdf_fact-0000", "train-csv_total-0001"]
    assert "csv_total" in result.output and "pdf_fact" in result.output


def test_set_and_list_answers_are_checked_as_such(tmp_path: Path) -> None:
    records = make_tasks(tmp_path / "kinds", "test", 16, seed=3, families=["csv_lookup", "ocr_code"], verify=False)
    sets = [r for r in records if r.check.kind == "set"]
    lists = [r for r in records if r.check.kind == "list"]
    assert sets and lists
    for r in sets + lists:
        for good in _right_answers(r):
            assert check(r, good), (r.id, good)
        for bad in _wrong_answers(r):
            assert not check(r, bad), (r.id, bad)
    for r in lists:
        assert not check(r, list(reversed(r.answer)))
