"""Loaders (GTA folder, GAIA jsonl/parquet) and hand-computed metrics over invented datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_datasets import GAIA_ROWS, GTA_ITEMS, make_gaia, make_gta
from t3edge.errors import BadInput, T3Error
from t3edge.eval.gaia import load_gaia
from t3edge.eval.gaia_score import score_gaia
from t3edge.eval.gta import AnswerKey, fetch_gta, load_gta
from t3edge.eval.gta_score import score_gta
from t3edge.eval.items import ToolCall
from t3edge.eval.metrics import gaia_metrics, gta_metrics
from t3edge.eval.similarity import Similarity


def bag_of_words() -> Similarity:
    """A deterministic stand-in embedding: word counts over the texts seen."""
    vocab: dict[str, int] = {}

    def encode(texts):
        out = []
        for text in texts:
            vec = [0.0] * 256
            for word in text.lower().replace('"', " ").split():
                vec[vocab.setdefault(word, len(vocab)) % 256] += 1.0
            out.append(vec)
        return out

    return Similarity(encode, "bag-of-words")


def test_gta_loader_reads_all_three_answer_forms(tmp_path: Path) -> None:
    items = load_gta(make_gta(tmp_path / "gta"))
    assert [i.id for i in items] == ["0", "1", "2", "3", "4", "5"]
    assert [i.kind for i in items] == ["objective", "objective", "subjective", "image", "objective", "objective"]
    first = items[0]
    assert first.query == "How many apples are on the table?"
    assert first.files == [str((tmp_path / "gta" / "image" / "apples.jpg").resolve())]
    assert [c.name for c in first.reference_calls] == ["OCR", "Calculator"]
    # a reference argument naming a data file is made absolute, as GTA's loader does
    assert first.reference_calls[0].arguments["image"] == first.files[0]
    assert isinstance(items[1].gt_answer, AnswerKey) and items[1].gt_answer.blacklist == [["dark red"], ["maroon"]]
    assert items[2].gt_answer == ["A red car parked on a street", "A car on the road"]
    task = items[0].task()
    assert task.id == "0" and task.attachments[0].kind == "image"
    assert items[5].task().attachments == []


def test_gta_loader_finds_a_nested_release_and_orders_keys_numerically(tmp_path: Path) -> None:
    many = {str(k): GTA_ITEMS["0"] for k in (10, 2, 1)}
    make_gta(tmp_path / "release" / "gta_dataset", many)
    assert [i.id for i in load_gta(tmp_path / "release")] == ["1", "2", "10"]


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda d: d["1"].update(gt_answer={"whitelist": "red"}), "gt_answer"),
    (lambda d: d["1"].pop("dialogs"), "dialogs"),
    (lambda d: d["0"]["files"].__setitem__(0, {"type": "image", "path": "image/missing.jpg"}), "missing.jpg"),
    (lambda d: d["0"].update(dialogs=[{"role": "assistant", "content": "x"}]), "user turn"),
])
def test_gta_schema_errors_name_the_item_and_field(tmp_path: Path, mutate, needle: str) -> None:
    data = json.loads(json.dumps(GTA_ITEMS))
    mutate(data)
    root = make_gta(tmp_path / "gta", data)
    with pytest.raises(BadInput) as err:
        load_gta(root)
    assert needle in str(err.value) and "item" in str(err.value)


def test_gta_wrong_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no dataset.json"):
        load_gta(tmp_path)
    with pytest.raises(BadInput, match="not found"):
        load_gta(tmp_path / "nope")
    root = make_gta(tmp_path / "gta")
    (root / "toolmeta.json").unlink()
    with pytest.raises(BadInput, match="toolmeta.json"):
        load_gta(root)


def test_gta_fetch_offline_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(T3Error) as err:
        fetch_gta(tmp_path / "dl")
    text = str(err.value)
    assert "Jize1/GTA" in text and "--data" in text and "\n" not in text


@pytest.mark.parametrize("parquet", [False, True])
def test_gaia_loader_jsonl_and_parquet(tmp_path: Path, parquet: bool) -> None:
    items = load_gaia(make_gaia(tmp_path / "gaia", parquet=parquet))
    assert [i.id for i in items] == [r["task_id"] for r in GAIA_ROWS]
    assert [i.level for i in items] == [1, 1, 2, 2, 3]
    assert items[0].final_answer == "24" and items[0].file is None
    assert items[2].file == str((tmp_path / "gaia" / "bird.png").resolve())
    assert items[3].task().attachments[0].kind == "csv"


def test_gaia_older_layout_and_hidden_answers(tmp_path: Path) -> None:
    rows = [{**r, "Final answer": "?"} for r in GAIA_ROWS[:2]]
    make_gaia(tmp_path / "GAIA" / "2023" / "test", rows=rows)
    items = load_gaia(tmp_path / "GAIA", split="test")
    assert len(items) == 2 and not items[0].has_answer
    assert score_gaia(items[0], "24").correct is None


@pytest.mark.parametrize(("row", "needle"), [
    ({"task_id": "x", "Level": 1, "Final answer": "1", "file_name": ""}, "Question"),
    ({"task_id": "x", "Question": "q", "Level": "hard", "Final answer": "1", "file_name": ""}, "Level"),
    ({"task_id": "x", "Question": "q", "Level": 1, "Final answer": "1", "file_name": "gone.pdf"}, "gone.pdf"),
])
def test_gaia_schema_errors_name_the_field(tmp_path: Path, row, needle: str) -> None:
    with pytest.raises(BadInput) as err:
        load_gaia(make_gaia(tmp_path / "gaia", rows=[row]))
    assert needle in str(err.value)


def test_gaia_wrong_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="metadata"):
        load_gaia(tmp_path)


# Predictions for the invented GTA set, and the hand-computed scores they must give.
GTA_PREDICTIONS = {"0": "four apples", "1": "dark red", "2": "A red car parked on a street", "3": None,
                   "4": "25%", "5": "5.5 dollars"}
GTA_CALLS = {
    "0": [ToolCall(name="OCR"), ToolCall(name="Calculator")],
    "1": [ToolCall(name="ImageDescription")],
    "2": [ToolCall(name="OCR")],
    "3": [ToolCall(name="TextToBbox", arguments={"image": "IMG", "text": "cat"}),
          ToolCall(name="DrawBox", arguments={"image": "IMG", "bbox": "(1, 2, 30, 40)", "annotation": "cat"})],
    "4": [],
    "5": [ToolCall(name="GoogleSearch", error="offline")],
}


def _gta_verdicts(root: Path, similarity: Similarity | None):
    items = load_gta(make_gta(root))
    calls = {k: [c.model_copy(update={"arguments": {a: (items[3].files[0] if v == "IMG" else v)
                                                     for a, v in c.arguments.items()}}) for c in cs]
             for k, cs in GTA_CALLS.items()}
    return [score_gta(i, GTA_PREDICTIONS[i.id], calls[i.id], similarity) for i in items]


def test_gta_metrics_hand_computed(tmp_path: Path) -> None:
    verdicts = _gta_verdicts(tmp_path / "gta", bag_of_words())
    assert [v.official for v in verdicts] == [1.0, 0.0, pytest.approx(1.0), None, 0.0, 1.0]
    assert [v.lenient for v in verdicts] == [True, True, None, None, True, True]
    assert verdicts[3].image_score == pytest.approx(1.0)  # same DrawBox arguments as the reference
    m = gta_metrics(verdicts)
    assert m["counts"]["items"] == 6 and m["counts"]["text"] == 5 and m["counts"]["objective"] == 4
    assert m["official"]["answer_acc"] == pytest.approx(60.0)  # (1 + 0 + 1 + 0 + 1) / 5
    assert m["official"]["answer_acc_objective"] == pytest.approx(50.0)
    assert m["official"]["ans_plus_i"] == pytest.approx(400 / 6)  # (3 + 1) / 6
    assert m["t3agent"]["answer_acc"] == pytest.approx(100.0)  # lenient: 4 of 4 dict answers
    f1 = m["official"]["tool_f1"]
    # perception: 3 of 5 reference calls found, 4 predicted -> P 3/4, R 3/5, F1 2/3
    assert f1["perception"] == pytest.approx(100 * 2 / 3, abs=1e-2)
    assert f1["operation"] == pytest.approx(100.0, abs=1e-2)  # DrawBox, GoogleSearch (errors count)
    assert f1["logic"] == pytest.approx(100.0, abs=1e-2)
    assert f1["creativity"] is None  # no reference call of that kind
    assert m["t3agent"]["tool_acc"] == pytest.approx(75.0)  # positional matches 2+1+0+2+0+1 of 8


def test_gta_without_embeddings_marks_items_skipped(tmp_path: Path) -> None:
    verdicts = _gta_verdicts(tmp_path / "gta", None)
    assert verdicts[2].official is None and "embedding" in (verdicts[2].skipped or "")
    assert verdicts[3].image_score is None and verdicts[3].skipped
    m = gta_metrics(verdicts)
    assert m["official"]["answer_acc"] is None and m["official"]["ans_plus_i"] is None
    assert m["counts"]["subjective_skipped"] == 1 and m["counts"]["image_skipped"] == 1
    assert m["official"]["answer_acc_objective"] == pytest.approx(50.0)


def test_gta_image_query_missing_tool_scores_zero_without_embeddings(tmp_path: Path) -> None:
    items = load_gta(make_gta(tmp_path / "gta"))
    verdict = score_gta(items[3], "done", [ToolCall(name="TextToBbox")], None)
    assert verdict.image_score == 0.0 and verdict.skipped is None
    failed = score_gta(items[3], "done", [ToolCall(name="DrawBox", error="bad bbox")], None)
    assert failed.image_score == 0.0  # a call that failed does not count


def test_gaia_metrics_hand_computed(tmp_path: Path) -> None:
    items = load_gaia(make_gaia(tmp_path / "gaia"))
    answers = {"t-num": "24", "t-list": "Red; Green; Blue", "t-str": "seagull", "t-money": "$1,000.00", "t-hard": None}
    verdicts = [score_gaia(i, answers[i.id]) for i in items]
    assert [v.correct for v in verdicts] == [True, True, True, True, False]
    m = gaia_metrics(verdicts)
    assert m["official"]["accuracy"] == pytest.approx(80.0)
    assert m["official"]["levels"]["1"] == {"n": 2, "correct": 2, "accuracy": 100.0}
    assert m["official"]["levels"]["3"]["accuracy"] == 0.0
    assert m["counts"]["answered"] == 4


def test_a_release_shipped_as_zip_is_unpacked(tmp_path: Path) -> None:
    import zipfile

    from t3edge.eval.hub import unpack_zips

    src = make_gta(tmp_path / "src" / "gta_dataset")
    (tmp_path / "hub").mkdir()
    with zipfile.ZipFile(tmp_path / "hub" / "gta.zip", "w") as zf:
        for path in src.rglob("*"):
            zf.write(path, path.relative_to(src.parent))
    unpack_zips(tmp_path / "hub")
    assert len(load_gta(tmp_path / "hub")) == 6
    (tmp_path / "evil").mkdir()
    with zipfile.ZipFile(tmp_path / "evil" / "x.zip", "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(T3Error, match="outside"):
        unpack_zips(tmp_path / "evil")


def test_similarity_is_optional_and_says_why_it_is_missing() -> None:
    from t3edge.eval.similarity import load_similarity

    sim, reason = load_similarity(None, None)
    assert sim is None and "no embedding model" in reason
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        sim, reason = load_similarity("all-mpnet-base-v2", None)
        assert sim is None and "sentence-transformers is not installed" in reason
    s = bag_of_words()
    assert s.score("a red car", "a red car") == pytest.approx(1.0)
    assert s.score("", "x") == 0.0 and s.best("red", []) == 0.0


def test_gaia_fetch_offline_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from t3edge.eval.gaia import fetch_gaia

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(T3Error) as err:
        fetch_gaia(tmp_path / "dl", token="hf_x")
    assert "gaia-benchmark/GAIA" in str(err.value) and "\n" not in str(err.value)
