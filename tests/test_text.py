from tangpoem_hf.text import (
    FORM_SHAPES,
    FORMS,
    OTHER,
    classify_form,
    clean_poem_text,
    form_name,
    form_title,
    has_placeholder,
    is_han,
    join_lines,
    line_end,
    normalize_punctuation,
    split_lines,
    split_rows,
    strip_punctuation,
    to_simplified,
    to_traditional,
)


def test_traditional_to_simplified_and_back():
    assert to_simplified("黃河入海流") == "黄河入海流"
    assert to_traditional("黄河入海流") == "黃河入海流"


def test_clean_keeps_traditional_when_asked():
    assert clean_poem_text("黃河入海流。", simplified=False) == "黃河入海流。"


def test_placeholders_are_detected():
    assert has_placeholder("妖韶援綠{𥫗/戢}。")
    assert has_placeholder("□□□滿山，花落始知靜。")
    assert has_placeholder("○是")
    assert not has_placeholder("白日依山盡，黃河入海流。")


def test_bracketed_notes_are_dropped():
    assert clean_poem_text("山下蘭芽（京本作「良」）短浸溪。") == "山下兰芽短浸溪。"
    assert clean_poem_text("月落(一作烏)啼。") == "月落啼。"
    assert clean_poem_text("〔注〕春風。") == "春风。"


def test_square_bracket_corrections_keep_the_reading():
    assert clean_poem_text("整[襟]坐。") == "整襟坐。"


def test_quotes_latin_and_digits_removed():
    assert clean_poem_text("「天耶」地耶abc12。") == "天耶地耶。"
    assert clean_poem_text("《楚辭》曰。") == "楚辞曰。"


def test_punctuation_normalised_to_comma_and_period():
    assert normalize_punctuation("春眠,不覺曉;處處!聞啼?") == "春眠，不覺曉，處處。聞啼。"
    assert clean_poem_text("問春桂：桃李正芬華，年光隨處滿！") == "问春桂，桃李正芬华，年光随处满。"
    assert clean_poem_text("，，春風，。") == "春风。"


def test_is_han_covers_extension_planes_and_rejects_the_rest():
    assert is_han("山") and is_han("𥫗") and is_han("㭊")
    for ch in "a1，。 □\u200f😀":
        assert not is_han(ch)
    assert not is_han("山水")


def test_strip_and_split():
    assert strip_punctuation("白日依山尽，黄河入海流。") == "白日依山尽黄河入海流"
    assert split_lines("白日依山尽，黄河入海流。") == ["白日依山尽", "黄河入海流"]


def test_nested_and_unclosed_notes_and_stray_brackets_are_removed():
    """Shapes from the real corpus that used to leave （ ） ［ ］ in the training text."""
    assert (
        clean_poem_text("滿廊僧不厭，一片俗嫌多。（《詩話》三八（此詩出《苕溪》卷五五。）")
        == "满廊僧不厌，一片俗嫌多。"
    )
    assert clean_poem_text("會有寒鵶夜夜啼。（〖1〗以上十三首詩從伯二五五五殘卷中錄出") == "会有寒鵶夜夜啼。"
    assert clean_poem_text("整［襟］坐，春風。") == "整襟坐，春风。"
    assert clean_poem_text("春風）起，明月］來。") == "春风起，明月来。"


def test_spelled_out_and_private_use_characters_are_lost_characters():
    """⿰木養 spells out an unencoded character and U+E829 is a font's own glyph: the poem is dropped."""
    assert has_placeholder("遊人得得過。⿰木養深黃狖小")
    assert has_placeholder("分明\ue829\ue829羽林槍。")
    assert not has_placeholder("床前明月光，疑是地上霜。")


def test_the_cleaned_corpus_holds_only_han_and_line_marks(small_corpus):
    from conftest import POEMS, poem_records, write_corpus

    from tangpoem_hf.corpus import build_splits

    records = poem_records(1)
    records[0]["paragraphs"] = ["白日依山盡（一作（別本）曰），黃河入海流。", "欲窮千里目，更上一層樓。（見《全唐詩》"]
    records[1]["paragraphs"] = ["春眠不覺曉，\ue829處聞啼鳥。", "夜來風雨聲，花落知多少。"]
    splits, _ = build_splits(write_corpus(small_corpus.parent / "odd", records))
    texts = [t for name in splits for t in splits[name]["text"]]
    assert len(texts) == len(POEMS) - 1  # the private-use poem is dropped
    assert "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。" in texts
    assert all(is_han(ch) or ch in "，。" for t in texts for ch in t)


def test_line_ends_alternate_and_the_last_line_ends_the_poem():
    assert (
        join_lines(["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"])
        == "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
    )
    assert join_lines(["床前明月光", "疑是地上霜", "举头望明月"]) == "床前明月光，疑是地上霜。举头望明月。"
    assert [line_end(i, 2) for i in range(2)] == ["，", "。"]
    assert split_lines(join_lines(["春眠不觉晓", "处处闻啼鸟"])) == ["春眠不觉晓", "处处闻啼鸟"]


def test_form_names_in_one_table():
    assert [form_name(*shape) for shape in FORM_SHAPES.values()] == list(FORMS) == ["五绝", "七绝", "五律", "七律"]
    assert form_name(5, 6) == form_name(6, 4) == OTHER
    assert [classify_form(join_lines(["一二三四五"] * n)) for n in (4, 8, 6)] == ["五绝", "五律", OTHER]
    assert classify_form("一二三四五，一二三四五。一二三四五一二三四五。") == OTHER  # a line without its mark
    assert [form_title(7, 4), form_title(5, 8), form_title(5, 12), form_title(7, 6)] == [
        "七言绝句",
        "五言律诗",
        "五言十二句",
        "七言六句",
    ]


def test_rows_split_at_marks_and_line_breaks():
    assert split_rows(" 白日依山尽，黄河入海流。\n欲穷千里目\n\n更上一层楼 ") == [
        "白日依山尽",
        "黄河入海流",
        "欲穷千里目",
        "更上一层楼",
    ]
    assert split_rows("") == []
