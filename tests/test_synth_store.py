"""Run storage, resumability bookkeeping, near-duplicates, the split, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import SynthConfig
from synth.errors import Rejected
from synth.export import is_valid_split
from synth.files import extract_code
from synth.image_pool import ImagePool, PoolImage, read_captions
from synth.items import Dropped, SynthItem
from synth.similarity import near_duplicates
from synth.store import RunStore
from t3edge.config import load_config
from t3edge.errors import BadInput, T3Error


def test_transient_drops_are_retried_and_later_success_clears_them(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append("files", SynthItem(id="a", query="q a"))
    store.drop(Dropped(id="b", stage="files", reason="no_matching_image"))
    store.drop(Dropped(id="c", stage="files", reason="api_error", transient=True))
    assert store.done_ids("files") == {"a", "b"}
    store.append("files", SynthItem(id="c", query="q c"))  # a later run got it through
    assert {d.id for d in store.dropped()} == {"b"}
    store.close()


def test_a_torn_last_line_is_skipped_and_the_next_record_is_whole(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append("queries", SynthItem(id="a", query="first"))
    store.close()
    with open(store.path("queries"), "ab") as fh:
        fh.write(b'{"id": "b", "que')  # killed mid-write
    store = RunStore(tmp_path)
    store.append("queries", SynthItem(id="c", query="third"))
    assert [i.id for i in store.items("queries")] == ["a", "c"]
    store.close()


def test_near_duplicates_keep_the_first_of_each_group() -> None:
    texts = [
        "What is the total price on this grocery receipt photo?",
        "Which planet in the chart has the most moons?",
        "What is the total price on this grocery receipt photo, exactly?",
        "what is THE total price on this grocery receipt photo",
        "What is the total price on this restaurant receipt photo?",
    ]
    assert near_duplicates(texts, 0.8) == {2: 0, 3: 0}


def test_split_is_stable_and_near_the_fraction() -> None:
    ids = [f"{i:08x}" for i in range(2000)]
    valid = [i for i in ids if is_valid_split(i, 0.1)]
    assert 150 < len(valid) < 250
    assert valid == [i for i in ids if is_valid_split(i, 0.1)]
    assert not any(is_valid_split(i, 0.0) for i in ids)


def test_code_is_taken_from_the_fence() -> None:
    assert extract_code("Here:\n```python\nprint(1)\n```\nbye") == "print(1)"
    with pytest.raises(Rejected) as info:
        extract_code("I would write a file.")
    assert info.value.reason == "no_code"


def test_image_pool_retrieves_by_caption_and_skips_used(tmp_path: Path) -> None:
    pool = ImagePool(tmp_path, [PoolImage(path="a.png", caption="a red bus on a city street"),
                                PoolImage(path="b.png", caption="a bowl of green apples on a table")])
    entry, score = pool.best("photo of apples in a bowl", set())
    assert entry.path == "b.png" and score > 0.3
    assert pool.best("photo of apples in a bowl", {"b.png"})[0].path == "a.png"
    with pytest.raises(T3Error, match="index-images"):
        ImagePool(tmp_path, [])


def test_captions_file_formats(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("image,caption\na.png,a cat\n")
    (tmp_path / "c.tsv").write_text("image\tcaption\nb.png\ta dog\n")
    (tmp_path / "bad.csv").write_text("file,text\na.png,a cat\n")
    assert read_captions(tmp_path / "c.csv") == {"a.png": "a cat"}
    assert read_captions(tmp_path / "c.tsv") == {"b.png": "a dog"}
    with pytest.raises(BadInput, match="needs `image` and `caption`"):
        read_captions(tmp_path / "bad.csv")


def test_one_process_at_a_time_per_run(tmp_path: Path) -> None:
    import asyncio

    from synth.engine import RunContext

    async def nested() -> None:
        async with RunContext(SynthConfig(), tmp_path):
            with pytest.raises(T3Error, match="another synth process"):
                async with RunContext(SynthConfig(), tmp_path):
                    pass
        async with RunContext(SynthConfig(), tmp_path):  # released
            pass

    asyncio.run(nested())


def test_invalid_setting_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "synth.toml"
    bad.write_text("[api]\nconcurrency = 0\n")
    with pytest.raises(T3Error, match="synth.api.concurrency"):
        load_config("synth", SynthConfig, file=bad)
