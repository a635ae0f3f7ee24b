"""Text: script conversion, character classes, line splitting, line ends and form names, each in one place.

The corpus cleaner, the tokenizer, the decoder, the checker and every user-facing input go through
these functions, so a character, a line and a form are judged the same way everywhere.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

COMMA = "，"
PERIOD = "。"
LINE_PUNCT = COMMA + PERIOD
# The regulated forms by (characters per line, lines); any other poem is OTHER.
FORM_SHAPES = {"五绝": (5, 4), "七绝": (7, 4), "五律": (5, 8), "七律": (7, 8)}
FORMS = tuple(FORM_SHAPES)
OTHER = "other"
FORM_CLASSES = (*FORMS, OTHER)  # what classify_form tells apart
SIZE_NAMES = {5: "五言", 7: "七言"}  # characters per line

# Half-width and rarer full-width marks, mapped onto the two marks a regulated poem uses:
# clause-internal marks become a comma, sentence-final marks a full stop.
_PUNCT_MAP = str.maketrans(
    {
        ",": COMMA,
        "、": COMMA,
        "；": COMMA,
        ";": COMMA,
        "：": COMMA,
        ":": COMMA,
        ".": PERIOD,
        "？": PERIOD,
        "?": PERIOD,
        "！": PERIOD,
        "!": PERIOD,
        "…": PERIOD,
    }
)
# Characters no text can carry: {X/Y} builds an unencoded character, □ ○ ● mark lost ones,
# ⿰⿱… (ideographic description) spell one out, and a private-use code point is a font's own glyph.
_PLACEHOLDER = re.compile(r"\{[^{}]*\}|[□○●\u2ff0-\u2fff\ue000-\uf8ff\U000f0000-\U0010ffff]")
# （…）, (…), 〔…〕 and 〖…〗 hold variant readings and notes, never the poem itself; notes nest.
_NOTE = re.compile(r"（[^（）]*）|\([^()]*\)|〔[^〔〕]*〕|〖[^〖〗]*〗")
# A note the source never closes runs to the end of the poem.
_OPEN_NOTE = re.compile(r"[（(].*$")
# [X] and ［X］ mark an editor's correction: the bracketed text is the reading to keep.
_CORRECTION = re.compile(r"\[([^\[\]]*)\]|［([^［］]*)］")
_STRAY_BRACKETS = re.compile(r"[（）()［］\[\]〔〕〖〗]")
_QUOTES = re.compile(r"[「」『』《》〈〉“”‘’\"'·/|=\-\s]")
_LATIN_DIGITS = re.compile(r"[A-Za-z0-9０-９Ａ-Ｚａ-ｚ]")


@lru_cache(maxsize=2)
def _converter(config: str) -> opencc.OpenCC:
    return opencc.OpenCC(config)


def to_simplified(text: str) -> str:
    """Traditional → simplified with OpenCC's t2s table (the corpus is traditional)."""
    return _converter("t2s").convert(text)


def to_traditional(text: str) -> str:
    """Simplified → traditional, for users who want to read the poem in the corpus's script."""
    return _converter("s2t").convert(text)


def is_han(ch: str) -> bool:
    """True for one CJK ideograph, including the extension planes the corpus uses."""
    return len(ch) == 1 and unicodedata.category(ch) == "Lo" and "CJK" in unicodedata.name(ch, "")


def has_placeholder(text: str) -> bool:
    """Whether the text contains a lost or unencoded character that no repair can recover."""
    return _PLACEHOLDER.search(text) is not None


def normalize_punctuation(text: str) -> str:
    """Map every line-ending mark onto ，/。 so the model sees one line grammar."""
    return text.translate(_PUNCT_MAP)


def clean_poem_text(text: str, simplified: bool = True) -> str:
    """Strip editorial markup from one poem's text and normalise its script and punctuation.

    Placeholders are left to the caller (see :func:`has_placeholder`): a poem with a lost
    character cannot be repaired, so the corpus drops it rather than silently shortening a line.
    """
    while (shorter := _NOTE.sub("", text)) != text:
        text = shorter
    text = _OPEN_NOTE.sub("", text)
    text = _CORRECTION.sub(r"\1\2", text)
    text = _STRAY_BRACKETS.sub("", text)
    text = _QUOTES.sub("", text)
    text = _LATIN_DIGITS.sub("", text)
    text = normalize_punctuation(text)
    text = re.sub(r"[，。]*。[，。]*", PERIOD, text)  # collapse runs such as "，。" after removals
    text = re.sub(r"，{2,}", COMMA, text).lstrip(LINE_PUNCT)
    if simplified:
        text = to_simplified(text)
    return text


def strip_punctuation(text: str) -> str:
    """Keep only Han characters: the report's preprocessing."""
    return "".join(ch for ch in text if is_han(ch))


def split_lines(text: str) -> list[str]:
    """Split a poem at ，/。 into its lines, without the marks."""
    return [line for line in re.split(r"[，。]", text) if line]


def punctuate(text: str) -> str:
    """Restore ，/。 in a bare poem of equal 7- or 5-character lines, by its length alone.

    20, 28, 40 and 56 characters are the quatrains and regulated verse of 五言 and 七言; any
    multiple of 10 or 14 is read as couplets (7 when both fit, e.g. 70 characters). Text that already
    has punctuation, or whose length fits neither, is returned unchanged.
    """
    if any(p in text for p in LINE_PUNCT) or not all(is_han(ch) for ch in text):
        return text
    size = 7 if len(text) % 14 == 0 else 5 if len(text) % 10 == 0 else 0
    if not size:
        return text
    return join_lines([text[i : i + size] for i in range(0, len(text), size)])


def split_rows(text: str) -> list[str]:
    """Split a poem as a user gives it, at ，/。 or line breaks, into stripped, non-empty lines."""
    return [line.strip() for line in re.split(r"[，。\n]", text) if line.strip()]


def line_end(index: int, total: int) -> str:
    """The mark after line ``index`` (from 0) of ``total``: 「，」 after odd lines, 「。」 after even ones and the last
    line."""
    return COMMA if index % 2 == 0 and index + 1 < total else PERIOD


def join_lines(lines: list[str] | tuple[str, ...]) -> str:
    """A poem's lines with their line ends (see :func:`line_end`)."""
    return "".join(line + line_end(i, len(lines)) for i, line in enumerate(lines))


def form_name(size: int, lines: int) -> str:
    """五绝/七绝/五律/七律 for 4 or 8 lines of 5 or 7 characters; anything else is ``OTHER``."""
    return next((name for name, shape in FORM_SHAPES.items() if shape == (size, lines)), OTHER)


def classify_form(text: str) -> str:
    """The form of a punctuated poem by its line count and length; anything irregular is ``OTHER``."""
    lines = split_lines(text)
    lengths = {len(line) for line in lines}
    if len(lengths) != 1 or text.count(COMMA) + text.count(PERIOD) != len(lines):
        return OTHER
    return form_name(lengths.pop(), len(lines))


def form_title(size: int, lines: int) -> str:
    """The form as a reader names it: 五言绝句, 七言律诗, or 五言十二句 for the uncommon lengths."""
    if lines == 4:
        return SIZE_NAMES[size] + "绝句"
    if lines == 8:
        return SIZE_NAMES[size] + "律诗"
    return f"{SIZE_NAMES[size]}{_chinese_number(lines)}句"


def _chinese_number(n: int) -> str:
    digits = "〇一二三四五六七八九"
    if n < 10:
        return digits[n]
    return "十" + (digits[n - 10] if n > 10 else "")
