"""The 平水韵 table, the regulated-verse checker, and decoding under rhyme and tone constraints."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tangpoem_hf import CharTokenizer, InputError, TangPoemConfig, TangPoemLSTM
from tangpoem_hf.decoding import generate_poem, generate_poems
from tangpoem_hf.options import PLAIN_SAMPLE
from tangpoem_hf.prosody import (
    PING,
    ZE,
    check_poem,
    load_table,
    patterns,
)
from tangpoem_hf.text import to_simplified
from tangpoem_hf.tokenizer import SPECIALS
from tangpoem_hf.verse import masks_for, verse_constraints

DENG_GUAN_QUE_LOU = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
JUE_JU = "两个黄鹂鸣翠柳，一行白鹭上青天。窗含西岭千秋雪，门泊东吴万里船。"
CHU_SAI = "秦時明月漢時關，萬里長征人未還。但使龍城飛將在，不教胡馬度陰山。"  # traditional on purpose
CHUN_WANG = "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"
# 《绝句》 with its lines reversed inside: rhyme words leave the line ends, the tones fall apart.
SCRAMBLED = "青天一行白鹭上，翠柳鸣黄鹂两个。船里万吴东泊门，雪秋千岭西含窗。"


# --- the table ---------------------------------------------------------------------------------


def test_table_has_106_groups_30_of_them_ping():
    table = load_table()
    assert len(table.groups) == 106
    assert sum(g.tone == PING for g in table.groups) == 30
    assert table.groups[0].name == "上平一东" and table.groups[-1].name == "入声十七洽"


def test_table_is_indexed_in_both_scripts():
    table = load_table()
    for trad, simp in [("東", "东"), ("國", "国"), ("關", "关"), ("鄉", "乡"), ("樓", "楼")]:
        assert table.groups_of(trad) and table.groups_of(trad) == table.groups_of(simp)


def test_entering_tone_is_ze_and_two_readings_are_kept():
    table = load_table()
    assert table.tones("白") == {ZE} and table.tones("日") == {ZE}  # 入声
    assert table.tones("山") == {PING}
    assert table.tones("看") == {PING, ZE}
    assert table.tones("x") == frozenset()


@pytest.mark.parametrize("name", ["东", "一东", "上平一东", "上平聲一東", "東"])
def test_find_group_by_any_name(name):
    assert load_table().find_group(name).name == "上平一东"


@pytest.mark.parametrize("name", ["董", "上声一董", "nonsense", ""])
def test_find_group_rejects_ze_and_unknown_names(name):
    with pytest.raises(InputError):
        load_table().find_group(name)


def test_four_patterns_per_form():
    five = patterns(5, 4)
    assert [p.lines[0] for p in five] == ["仄仄平平仄", "仄仄仄平平", "平平平仄仄", "平平仄仄平"]
    assert [p.name for p in five][:2] == ["仄起首句不入韵", "仄起首句入韵"]
    seven = patterns(7, 8)
    assert seven[0].lines[0] == "平平仄仄平平仄" and seven[0].name == "平起首句不入韵"
    assert len(seven[1].lines) == 8 and seven[1].lines[4] == seven[0].lines[0]  # line 5 unrhymed


# --- the checker -------------------------------------------------------------------------------


def test_deng_guan_que_lou_is_a_passing_wujue():
    r = check_poem(DENG_GUAN_QUE_LOU)
    assert r.form == "五绝" and r.format_ok
    assert r.rhyme_ok and r.rhyme_group == "下平十一尤" and r.rhyme_chars == ["流", "楼"]
    assert not r.first_line_rhymes
    assert r.relaxed_ok and r.pattern == "仄起首句不入韵"
    assert all(r.nian) and all(r.dui) and not r.gu_ping and not r.san_ping_wei
    assert r.passed


@pytest.mark.parametrize("poem, group", [(JUE_JU, "下平一先"), (CHU_SAI, "上平十五删")])
def test_famous_qijue_pass(poem, group):
    r = check_poem(poem)
    assert r.form == "七绝" and r.passed and r.rhyme_group == group
    assert r.unknown == []


def test_chun_wang_is_a_passing_wulv():
    r = check_poem(CHUN_WANG)
    assert r.form == "五律" and r.passed and r.rhyme_chars == ["深", "心", "金", "簪"]
    assert len(r.nian) == 3 and len(r.dui) == 4


def test_scrambled_poem_fails_for_the_right_reasons():
    r = check_poem(SCRAMBLED)
    assert r.format_ok and r.form == "七绝"
    assert not r.rhyme_ok and "个" in r.rhyme_message  # line 2 ends in a 仄 character
    assert not r.relaxed_ok and not r.strict_ok
    assert {(m.line, m.position) for m in r.relaxed_mismatches} >= {(2, 7)}
    assert r.san_ping_wei == [4]  # 西含窗: three 平 at the end
    assert not r.passed
    text = r.text_report()
    assert "FAIL" in text and "三平尾" in text


def test_known_faults_are_flagged():
    # 孤平: 仄平仄仄平 where 平平仄仄平 belongs (the second line).
    r = check_poem("白日依山尽，雨来落叶流。欲穷千里目，更上一层楼。")
    assert 2 in r.gu_ping


def test_bad_format_is_reported_not_checked():
    r = check_poem("白日依山尽，黄河入海流。欲穷千里目。")
    assert not r.format_ok and r.form is None and r.rhyme_ok is None and not r.passed
    assert "3 lines" in r.format_message
    r = check_poem(DENG_GUAN_QUE_LOU, form="七绝")
    assert not r.format_ok


def test_report_dict_is_json_and_lines_can_be_rows():
    r = check_poem("白日依山尽\n黄河入海流\n欲穷千里目\n更上一层楼")
    d = json.loads(json.dumps(r.to_dict(), ensure_ascii=False))
    assert d["passed"] and d["form"] == "五绝" and d["rhyme"]["group"] == "下平十一尤"
    assert d["format"]["line_lengths"] == [5, 5, 5, 5]
    assert d["tone"]["pattern_lines"][0] == "仄仄平平仄"


# Checked by hand against the 平水韵 (not derived from the table the checker and the decoder share):
# each character's tone(s), the rhyme group, the pattern, and the one strict-only deviation.
# ⊙ marks a character with both a 平 and a 仄 reading (更 gēng/gèng, 行 háng/xíng, 溅 jiān/jiàn,
# 三 sān/sàn, 胜 shēng/shèng, 浑 hún/hùn, 不 as 尤 fóu and 物 bù, 深 as 侵 and 沁).
HAND_CHECKED = [
    (
        DENG_GUAN_QUE_LOU, "五绝", "下平十一尤", ["流", "楼"], "仄起首句不入韵",
        ["仄仄平平仄", "平平仄仄平", "仄平平仄仄", "⊙仄仄平平"], [(3, 1)],
    ),
    (
        JUE_JU, "七绝", "下平一先", ["天", "船"], "仄起首句不入韵",
        ["仄仄平平平仄仄", "仄⊙仄仄仄平平", "平平平仄平平仄", "平仄平平仄仄平"], [(2, 1), (3, 3), (4, 1)],
    ),
    (
        CHUN_WANG, "五律", "下平十二侵", ["深", "心", "金", "簪"], "仄起首句不入韵",
        ["仄仄平平仄", "平平仄仄⊙", "仄平平⊙仄", "仄仄仄平平", "平仄平⊙仄", "平平仄仄平", "仄平平⊙仄", "⊙仄⊙⊙平"],
        [(3, 1), (5, 1), (7, 1)],
    ),
]  # fmt: skip


@pytest.mark.parametrize("poem, form, group, rhymes, pattern, tones, strict_off", HAND_CHECKED)
def test_hand_checked_poems(poem, form, group, rhymes, pattern, tones, strict_off):
    r = check_poem(poem)
    assert (r.form, r.rhyme_group, r.rhyme_chars, r.pattern, r.tones) == (form, group, rhymes, pattern, tones)
    assert r.relaxed_ok and [(m.line, m.position) for m in r.strict_mismatches] == strict_off


@pytest.mark.parametrize("poem, tones", [(h[0], h[5]) for h in HAND_CHECKED])
def test_decoder_masks_agree_with_the_hand_checked_tones(poem, tones):
    """The decoder's tone masks say what the hand check says, character by character."""
    lines = [line for line in poem.replace("。", "，").split("，") if line]
    tok = CharTokenizer(list(SPECIALS) + ["，", "。"] + sorted(set("".join(lines))))
    masks = masks_for(tok)
    for line, marks in zip(lines, tones):
        for ch, mark in zip(line, marks):
            i = tok.index[ch]
            assert (bool(masks.can_ping[i]), bool(masks.can_ze[i])) == (mark in "平⊙", mark in "仄⊙"), ch


def test_unclassifiable_characters_are_listed():
    r = check_poem("白日依山尽，黄河入海𠀋。欲穷千里目，更上一层楼。")
    assert r.unknown == ["𠀋"] and not r.rhyme_ok


# --- decoding under constraints ----------------------------------------------------------------


def _vocab_chars(per_group: int = 25) -> str:
    table = load_table()
    chars = to_simplified("".join(g.chars[:per_group] for g in table.groups)) + "春夏秋冬白日依山尽风花雪月"
    return "".join(dict.fromkeys(chars))


def _model(chars: str, seed: int = 0) -> TangPoemLSTM:
    tok = CharTokenizer(list(SPECIALS) + ["，", "。"] + list(chars))
    torch.manual_seed(seed)
    model = TangPoemLSTM(TangPoemConfig(vocab_size=len(tok), embedding_dim=16, hidden_size=16))
    model.tokenizer = tok
    return model.eval()


@pytest.fixture(scope="module")
def model() -> TangPoemLSTM:
    """A random-weight model over real characters: the constraints, not training, make the verse."""
    return _model(_vocab_chars())


@pytest.mark.parametrize("form, lines", [(5, 4), (7, 4), (5, 8), (7, 8)])
@pytest.mark.parametrize("tone", ["relaxed", "strict"])
def test_constrained_poems_pass_the_checker(model, form, lines, tone):
    poems = generate_poems(model, num=12, form=form, lines=lines, seed=7, rhyme=True, tone=tone)
    for p in poems:
        r = check_poem(p.text)
        assert r.format_ok and r.rhyme_ok and r.relaxed_ok, r.text_report()
        assert not r.repeated_rhymes and not r.gu_ping and not r.san_ping_wei, r.text_report()
        if tone == "strict":
            assert r.strict_ok, r.text_report()


def test_unconstrained_random_poems_mostly_fail(model):
    poems = generate_poems(model, num=12, form=7, lines=4, seed=7, **PLAIN_SAMPLE)
    assert sum(check_poem(p.text).passed for p in poems) < 6


def test_rhyme_only(model):
    for p in generate_poems(model, num=8, form=5, lines=8, seed=1, rhyme=True, tone="none"):
        r = check_poem(p.text)
        assert r.rhyme_ok and not r.repeated_rhymes, r.text_report()


def test_acrostic_and_rhyme_and_tone_together(model):
    for seed in range(4):
        p = generate_poem(model, acrostic="春夏秋冬", form=7, seed=seed, rhyme=True, tone="relaxed")
        assert [line[0] for line in p.lines] == list("春夏秋冬")
        r = check_poem(p.text)
        assert r.passed, r.text_report()


def test_first_characters_choose_the_pattern(model):
    # 日 (入声, 仄) second: only the 仄起 patterns fit; 风 (平) second: only the 平起 ones.
    for first, start in [("白日", "仄起"), ("春风", "平起")]:
        for seed in range(3):
            p = generate_poem(model, first=first, form=5, seed=seed, rhyme=True, tone="strict")
            r = check_poem(p.text)
            assert p.text.startswith(first) and r.strict_ok and r.pattern.startswith(start), r.text_report()


def test_user_rhyme_group(model):
    table = load_table()
    group = table.find_group("阳")
    for p in generate_poems(model, num=6, form=7, lines=8, seed=3, rhyme_group="下平七阳", tone="relaxed"):
        r = check_poem(p.text)
        assert r.rhyme_ok and r.rhyme_group == group.name, r.text_report()
        assert all(group.index in table.groups_of(ch) for ch in r.rhyme_chars)


def test_batch_equals_single_poems_under_constraints(model):
    batch = generate_poems(model, num=3, form=5, seed=10, rhyme=True, tone="relaxed")
    single = generate_poem(model, form=5, seed=11, rhyme=True, tone="relaxed")
    assert batch[1].lines == single.lines


def test_back_off_keeps_forced_characters_and_shape(model):
    # A forced first couplet that breaks the strict meter: it is kept, the shape still holds.
    p = generate_poem(model, first="白日依山尽风花雪月", form=5, lines=4, seed=0, rhyme=True, tone="strict")
    assert p.text.startswith("白日依山尽") and len(p.lines) == 4 and all(len(x) == 5 for x in p.lines)


def test_back_off_with_a_vocabulary_that_cannot_rhyme():
    # Only 仄 characters: every tone and rhyme mask would be empty, so all are skipped.
    table = load_table()
    ze_only = "".join(ch for ch in _vocab_chars(10) if table.tones(ch) == {ZE})[:300]
    tiny = _model(ze_only)
    for p in generate_poems(tiny, num=4, form=7, lines=8, seed=0, rhyme=True, tone="strict"):
        assert p.finished and len(p.lines) == 8 and all(len(x) == 7 for x in p.lines)
        assert all(ch in ze_only for x in p.lines for ch in x)


def test_too_small_a_rhyme_group_is_an_input_error():
    tiny = _model(_vocab_chars(2))
    with pytest.raises(InputError, match="characters of"):
        generate_poem(tiny, form=7, lines=8, seed=0, rhyme_group="咸")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tone": "loose"}, "tone must be"),
        ({"rhyme": "yes"}, "rhyme must be"),
        ({"rhyme_group": "xyz"}, "rhyme_group must name"),
        ({"rhyme_group": "董"}, "仄声"),
    ],
)
def test_bad_values_are_one_sentence_input_errors(model, kwargs, message):
    with pytest.raises(InputError, match=message):
        generate_poem(model, form=5, seed=0, **kwargs)
    with pytest.raises(InputError, match=message):
        verse_constraints(**kwargs)


def test_masks_are_cached_per_tokenizer(model):
    m = masks_for(model.tokenizer)
    assert masks_for(model.tokenizer) is m
    assert m.tone_rows.dtype == torch.bool and m.tone_rows.shape == (5, len(model.tokenizer))
    assert torch.equal(m.tone_rows[4], m.can_ze & ~m.can_ping)  # 仄 only: an unrhymed line 1's end
    assert int(m.group_size.sum()) > 0


# --- the real corpus -----------------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.skipif(not os.environ.get("TANGPOEM_CORPUS"), reason="TANGPOEM_CORPUS is not set")
def test_corpus_rates_are_in_the_expected_range():
    from tangpoem_hf.corpus import build_splits

    splits, _ = build_splits(None)
    ds = splits["validation"]
    for form, low in [("七绝", 0.8), ("五律", 0.7)]:
        texts = [t for t, f in zip(ds["text"], ds["form"]) if f == form]
        rate = sum(check_poem(t).rhyme_ok for t in texts) / len(texts)
        assert rate > low, (form, rate)


# --- the CLI -------------------------------------------------------------------------------------


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from tangpoem_hf.cli import main

    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_check_text_and_json(capsys):
    code, out, _ = _cli(["check", DENG_GUAN_QUE_LOU], capsys)
    assert code == 0 and "五绝  PASS" in out and "下平十一尤" in out
    code, out, _ = _cli(["check", SCRAMBLED, "--json"], capsys)
    data = json.loads(out)
    assert code == 1 and not data["passed"] and data["rhyme"]["ok"] is False
    assert data["tone"]["san_ping_wei"] == [4]


def test_cli_check_file_of_poems(tmp_path, capsys):
    path = tmp_path / "poems.txt"
    path.write_text(f"{JUE_JU}\n\n{CHU_SAI}\n\n{CHUN_WANG}\n", encoding="utf-8")
    code, out, _ = _cli(["check", str(path), "--json"], capsys)
    rows = json.loads(out)
    assert code == 0 and [r["form"] for r in rows] == ["七绝", "七绝", "五律"] and all(r["passed"] for r in rows)


def test_cli_check_errors_exit_2(capsys):
    code, _, err = _cli(["check", "no-such-file.txt"], capsys)
    assert code == 2 and "neither a file nor a poem" in err and "Traceback" not in err


def test_cli_generate_with_rhyme_and_tone(model, tmp_path, capsys):
    model.save_pretrained(tmp_path / "m")
    args = ["generate", "--model", str(tmp_path / "m"), "--form", "5", "--num", "3", "--seed", "2", "--json"]
    code, out, _ = _cli([*args, "--rhyme", "--tone", "strict", "--rhyme-group", "东"], capsys)
    assert code == 0
    for row in json.loads(out):
        r = check_poem(row["text"])
        assert r.strict_ok and r.rhyme_group == "上平一东", r.text_report()
    code, _, err = _cli([*args, "--rhyme-group", "董"], capsys)
    assert code == 2 and "仄声" in err


def test_cli_check_file_with_one_poem_per_row(tmp_path, capsys):
    path = tmp_path / "poems.txt"
    path.write_text(f"{DENG_GUAN_QUE_LOU}\n{SCRAMBLED}\n", encoding="utf-8")
    code, out, _ = _cli(["check", str(path), "--json"], capsys)
    assert code == 1 and [r["passed"] for r in json.loads(out)] == [True, False]
    path.write_text("白日依山尽\n黄河入海流\n欲穷千里目\n更上一层楼\n", encoding="utf-8")  # one line per row
    code, out, _ = _cli(["check", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["form"] == "五绝"
