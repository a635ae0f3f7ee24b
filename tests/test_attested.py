"""What the corpus attests: the shipped resources, the metric, and the build script's counting."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

from tangpoem_hf.attested import (
    ATTESTED_PATH,
    BIGRAMS_PATH,
    bound_words,
    decode_varints,
    doublings,
    encode_varints,
    glued,
    rhyme_readings,
    unattested_bigram_share,
)
from tangpoem_hf.prosody import RhymeTable, check_poem, load_table, read_groups

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_corpus_resources", ROOT / "scripts" / "build_corpus_resources.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resources_stay_small():
    assert ATTESTED_PATH.stat().st_size < 20_000
    assert BIGRAMS_PATH.stat().st_size < 600_000


def test_attested_doublings_from_the_corpus():
    assert {"萋", "漠", "依", "悠", "声"} <= doublings()
    assert not {"乡", "气", "江", "天"} & doublings()  # 故乡乡, 气气; 涪江江上 is a repeat across words


def test_glued_pairs_from_the_corpus():
    """归去去 and 何处处 never stand in a Tang line though 归去 and 何处 are words; 一声声 does."""
    pairs = glued()
    assert "归" in pairs["去"] and "何" in pairs["处"] and "白" in pairs["云"]
    assert "一" not in pairs["声"] and "月" not in pairs["明"]  # 一声声, 月明明 stand in real lines
    assert set(pairs) <= doublings()


def test_bound_words_are_learnt():
    bound = bound_words()
    assert bound["徘"] == "徊" and bound["蹉"] == "跎" and bound["琵"] == "琶"
    assert "明" not in bound and "月" not in bound  # free characters


def test_a_character_rhymes_by_the_readings_poems_rhyme_it_by():
    table = load_table()
    yu, zhi = table.find_group("鱼").index, table.find_group("支").index
    raw = RhymeTable(read_groups())
    assert raw.ping_groups_of("居") == {zhi, yu}  # the 平水韵 lists 居 (jī) in 支 as well
    assert table.ping_groups_of("居") == {yu} and rhyme_readings()["居"] == ("上平六鱼",)
    assert table.tones("居") == {"平"}  # the tone is not touched
    assert table.ping_groups_of("宜") == {zhi}
    # 宜/居 no longer pass as a rhyme (each line ends in a character of 支 before 居).
    report = check_poem("春山多好景，野老正相宜。独坐无人问，闲来此地居。")
    assert not report.rhyme_ok, report.text_report()
    assert raw.ping_groups_of("宜") & raw.ping_groups_of("居")  # they did by the raw table


def test_unattested_bigram_share():
    assert unattested_bigram_share("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。") == 0.0
    assert unattested_bigram_share(["独徘裟"]) == 0.5  # 独徘 stands in the corpus; 徘裟 never does
    assert unattested_bigram_share(["徊徘裟"]) == 1.0
    assert unattested_bigram_share([]) == 0.0


def test_varints_round_trip():
    values = np.array([0, 1, 127, 128, 300, 16384, 2**35 + 7], dtype=np.int64)
    assert decode_varints(encode_varints(values)).tolist() == values.tolist()


def test_the_build_script_counts_what_it_says():
    build = _script()
    lines = ["萋萋芳草绿", "春草碧萋萋", "萋萋满别情", "江江上客来", "涪江江上月", "故乡乡思长"]
    assert build.learn_doublings(lines, min_count=3) == "萋"  # only at word starts, 3 times
    lines = ["不知归去也"] * 3 + ["一声何处来"] * 3 + ["明月一声声", "江上去去来"]
    assert build.learn_glued(lines, doubled="去声", min_count=3) == {"去": "归"}  # 一声声 stands once
    assert build.learn_glued(lines, doubled="去声", min_count=4) == {}
    lines = ["独徘徊不去", "徘徊望故乡", "明月照徘徊", "徘徊", "明日去", "月明中"]
    assert build.learn_bound(lines, min_count=3, share=0.9) == {"徘": "徊"}
    table = RhymeTable(read_groups())
    poems = [["白日依山尽", "闲来此地居", "欲穷千里目", "何处问樵渔"]] * 3 + [
        ["一二三四五", "春山正相宜", "六七八九十", "闲来此地居"]
    ]
    rhymes = build.learn_rhymes(poems, table, min_evidence=3, min_rhymes=2)
    assert rhymes["居"] == ["上平六鱼"]
    chars, codes = build.bigram_codes(["白日依山尽", "白日"])
    assert chars[0] in "白日" and len(codes) == 4
