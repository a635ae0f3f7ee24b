"""experiments/stock_phrases.py: what counts as a stock phrase, and the table it writes."""

from __future__ import annotations

import json
from collections import Counter

import stock_phrases as study


def test_a_poem_holds_each_phrase_once():
    assert study.phrases(["不知何处是", "不知何处去"]) == {
        "不知何",
        "知何处",
        "何处是",
        "何处去",
        "不知何处",
        "知何处是",
        "知何处去",
    }
    shares = study.poem_shares([["不知何处是", "不知何处去"], ["明月照高楼", "山中一夜雨"]])
    assert shares["不知何处"] == 0.5 and shares["明月照"] == 0.5


def test_a_stock_phrase_is_common_here_and_rare_in_real_poems():
    poems = [["不知何处是", "山中一夜雨"]] * 3 + [["不知何处去", "山中一夜雨"]] * 2
    poems += [["明月照高楼", "山中一夜雨"]] * 4 + [["白日依山尽", "黄河入海流"]]
    real = study.poem_shares([["山中一夜雨"]] * 1000 + [["白日依山尽"]] * 9 + [["千山鸟飞绝"]] * 991)
    found = [p for p, _, _ in study.stock(study.poem_shares(poems), real, len(poems))]
    assert found[0] == "不知何处"  # the commonest first
    assert "明月照高" in found
    assert "不知何" not in found  # inside a longer stock phrase held as often
    assert "山中一夜" not in found  # in 90% of these poems, but in half the real ones too
    assert "白日依" not in found  # one poem of ten: fewer than STOCK_POEMS


def test_the_ratio_to_real_poems_decides():
    poems = [["明月照高楼"]] * 10
    common = Counter({p: 0.5 for p in study.phrases(["明月照高楼"])})  # real poems hold it half the time
    assert study.stock(study.poem_shares(poems), common, 10) == []


def test_the_table_is_written_into_the_report(tmp_path, small_corpus, tiny_model_dir):
    doc = tmp_path / "stock.md"
    doc.write_text("# Stock phrases\n\nIntro.\n", encoding="utf-8")
    args = ["--model", str(tiny_model_dir), "--num", "2", "--corpus", str(small_corpus)]
    assert study.main([*args, "--doc", str(doc), "--out", str(tmp_path / "poems")]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Stock phrases\n\nIntro.\n") and study.MARK_START in text and study.MARK_END in text
    assert "| real poems (the prompts' own) | 2 |" in text and f"| {tiny_model_dir} | 2 |" in text
    drawn = json.loads(next((tmp_path / "poems").glob("*.json")).read_text(encoding="utf-8"))
    assert drawn["set"] == str(tiny_model_dir) and [len(p) for p in drawn["poems"]] == [4, 4]


def test_each_settings_is_a_row(tmp_path, small_corpus, tiny_model_dir):
    doc = tmp_path / "stock.md"
    args = ["--model", str(tiny_model_dir), "--num", "2", "--corpus", str(small_corpus), "--settings", "{}"]
    args += ["--settings", '{"temperature": 0.8}', "--doc", str(doc), "--out", str(tmp_path / "poems")]
    assert study.main(args) == 0
    text = doc.read_text(encoding="utf-8")
    assert f"| {tiny_model_dir} | 2 |" in text and f'| {tiny_model_dir} {{"temperature": 0.8}} | 2 |' in text
    assert "--settings '{\"temperature\": 0.8}'" in text


def test_ties_are_broken_the_same_way_in_every_run():
    shares = study.poem_shares([["明月照高楼"], ["白日依山尽"]])
    assert [p for p, _ in shares.most_common()] == sorted(shares)
