import json

import pytest
from conftest import POEMS, needs_corpus, poem_records, write_corpus

from tangpoem_hf.corpus import RAW_FEATURES, build_splits, corpus_stats, load_raw, split_of
from tangpoem_hf.errors import CorpusError
from tangpoem_hf.text import classify_form


def test_load_raw_uses_explicit_features(small_corpus):
    ds, report = load_raw(small_corpus)
    assert ds.features == RAW_FEATURES
    assert len(ds) == report.raw_poems == 4 * len(POEMS)
    assert ds[0]["paragraphs"][0] == "白日依山盡，黃河入海流。"


def test_corpus_from_environment(small_corpus, monkeypatch):
    monkeypatch.setenv("TANGPOEM_CORPUS", str(small_corpus))
    ds, _ = load_raw(None)
    assert len(ds) == 4 * len(POEMS)


def test_missing_corpus_setting_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TANGPOEM_CORPUS", raising=False)
    with pytest.raises(CorpusError, match="TANGPOEM_CORPUS"):
        load_raw(None)


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="no poet.tang"):
        load_raw(tmp_path)


def test_broken_files_and_poems_are_skipped_with_a_count(tmp_path):
    folder = write_corpus(tmp_path / "c", poem_records(copies=2))
    (folder / "poet.tang.90000.json").write_text("[{not json", encoding="utf-8")
    (folder / "poet.tang.91000.json").write_text("", encoding="utf-8")
    bad = [{"author": "x", "title": "y", "id": "z"}, {"paragraphs": ["春風。"], "id": "q"}, "oops"]
    (folder / "poet.tang.92000.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.warns(UserWarning):
        ds, report = load_raw(folder)
    assert len(ds) == 2 * len(POEMS)
    assert sorted(report.skipped_files) == ["poet.tang.90000.json", "poet.tang.91000.json"]
    assert report.skipped_poems == 3


def test_split_is_deterministic_and_roughly_96_2_2():
    assert split_of("3ad6d468-7ff1-4a7b-8b24-a27d70d00ed4") == split_of("3ad6d468-7ff1-4a7b-8b24-a27d70d00ed4")
    counts = {"train": 0, "validation": 0, "test": 0}
    for i in range(20000):
        counts[split_of(f"id-{i}")] += 1
    assert 0.95 < counts["train"] / 20000 < 0.97
    assert 0.015 < counts["validation"] / 20000 < 0.025
    assert 0.015 < counts["test"] / 20000 < 0.025


def test_split_values_are_stable_across_machines():
    # sha256 based: these fixed answers must never change, or a test poem would leak into training.
    # Recorded once: ids 63, 107, 251 and 261 go to test, 128 and 147 to validation, the rest below 262 to train.
    held_out = {63: "test", 107: "test", 128: "validation", 147: "validation", 251: "test", 261: "test"}
    assert {k: split_of(f"poem-{k}") for k in range(262)} == {k: held_out.get(k, "train") for k in range(262)}


@pytest.mark.parametrize(
    ("text", "form"),
    [
        ("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "五绝"),
        ("两个黄鹂鸣翠柳，一行白鹭上青天。窗含西岭千秋雪，门泊东吴万里船。", "七绝"),
        ("空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。", "五律"),
        ("白日依山尽，黄河入海流。", "other"),
        ("白日依山尽，黄河入海流。欲穷千里目，更上一层楼台。", "other"),
    ],
)
def test_classify_form(text, form):
    assert classify_form(text) == form


def test_build_splits_cleans_and_drops_placeholders(tmp_path):
    records = poem_records(copies=3)
    records.append({"author": "a", "title": "b", "paragraphs": ["□□□滿山，花落始知靜。"], "id": "lost-1"})
    folder = write_corpus(tmp_path / "c", records)
    splits, _ = build_splits(folder)
    assert set(splits) == {"train", "validation", "test"}
    total = sum(len(splits[s]) for s in splits)
    assert total == 3 * len(POEMS)  # the poem with lost characters is gone
    texts = set(splits["train"]["text"]) | set(splits["validation"]["text"]) | set(splits["test"]["text"])
    assert "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。" in texts
    assert set(splits["train"].column_names) == {"id", "author", "title", "tags", "text", "form"}


def test_build_splits_traditional_option(small_corpus):
    splits, _ = build_splits(small_corpus, simplified=False)
    assert "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。" in splits["train"]["text"]


def test_test_split_never_overlaps_train(small_corpus):
    splits, _ = build_splits(small_corpus)
    assert not set(splits["train"]["id"]) & set(splits["test"]["id"])
    assert not set(splits["train"]["id"]) & set(splits["validation"]["id"])


def test_stats_on_small_corpus(small_corpus):
    stats = corpus_stats(small_corpus)
    assert stats["raw_poems"] == stats["kept_poems"] == 4 * len(POEMS)
    assert stats["forms"]["五绝"] == 4 * 4 and stats["forms"]["七绝"] == 4 * 8 and stats["forms"]["五律"] == 4 * 4
    assert sum(stats["splits"].values()) == stats["kept_poems"]


@needs_corpus
def test_full_corpus_counts():
    stats = corpus_stats(None)
    assert 57_500 <= stats["raw_poems"] <= 57_700
    assert stats["kept_poems"] > 55_000
    assert stats["splits"]["train"] / stats["kept_poems"] > 0.95
    assert min(stats["forms"].values()) > 1000


def test_missing_folder_and_hub_id_are_told_apart(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_raw(str(tmp_path / "no" / "such"))
    with pytest.raises(CorpusError, match="Hub dataset someone/tang-poems"):  # offline: tried as a Hub id
        load_raw("someone/tang-poems")
