from tangpoem_hf.text import (
    clean_poem_text,
    has_placeholder,
    is_han,
    normalize_punctuation,
    split_lines,
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
