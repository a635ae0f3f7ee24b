"""Glue between the Gradio app and the package: UI values → a ``PoemRequest``, poem → HTML.

Kept out of ``app.py`` so it can be tested without starting a server, and so the app stays a thin
layer: every rule about what a valid poem request is still lives in :mod:`tangpoem_hf.request`.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import opencc

from .control import has_controls
from .decoding import Poem
from .errors import InputError
from .options import MAX_LINES, MIN_LINES, OPTIONS
from .request import PoemRequest, check_chars, rewrite_request
from .text import COMMA, PERIOD, SIZE_NAMES, form_title, is_han, split_rows, to_simplified, to_traditional
from .tokenizer import CharTokenizer

MODEL_ENV = "MODEL_ID"

# UI values (what the radios send, also over the API) and the English aliases API users may send.
MODES = {"续写": "continue", "藏头": "acrostic", "continue": "continue", "acrostic": "acrostic"}
FORMS = {**{name: size for size, name in SIZE_NAMES.items()}, "5": 5, "7": 7}
SCRIPTS = {"简体": "simplified", "繁體": "traditional", "simplified": "simplified", "traditional": "traditional"}

CHARS_NAME = "字 · Characters"
THEME_NAME = "主题 · Theme"
POEM_NAME = "诗 · Poem"

# Other spellings of a character that OpenCC knows: Taiwan/Hong Kong standards and Japanese
# shinjitai (via traditional). Used only to suggest a replacement for an unknown character.
_VARIANT_CONFIGS = ("t2s", "tw2s", "hk2s", "s2t", "jp2t")


def model_id_from_env() -> str | None:
    """``$MODEL_ID`` (a Hub repo id or a local folder), or None for the bundled model."""
    return os.environ.get(MODEL_ENV, "").strip() or None


@lru_cache(maxsize=8)
def _opencc(config: str) -> opencc.OpenCC:
    return opencc.OpenCC(config)


def variants(ch: str) -> list[str]:
    """Other forms of ``ch`` (simplified, traditional, regional, shinjitai→simplified), in order."""
    seen: list[str] = []
    for config in _VARIANT_CONFIGS:
        out = _opencc(config).convert(ch)
        if config == "jp2t":
            out = to_simplified(out)
        if len(out) == 1 and out != ch and out not in seen:
            seen.append(out)
    return seen


def unknown_chars_message(tokenizer: CharTokenizer, text: str, name: str) -> str | None:
    """One sentence naming the Han characters the model does not know, with a suggestion.

    Returns None when every Han character is known (the problem, if any, is something else).
    """
    unknown = [ch for ch in dict.fromkeys(text) if is_han(ch) and tokenizer.normalize(ch) not in tokenizer]
    if not unknown:
        return None
    described, hints = [], []
    for ch in unknown:
        simplified = to_simplified(ch)
        described.append(f"{ch}（简体 {simplified}）" if simplified != ch else ch)
        known = [v for v in variants(ch) if v in tokenizer]
        if known:
            hints.append(f"{known[0]} for {ch}")
    sentence = f"The model does not know the character(s) {'、'.join(described)} in {name}"
    if hints:
        return f"{sentence}; try {', '.join(hints)}."
    return f"{sentence}; please choose other characters."


def validate_chars(tokenizer: CharTokenizer, value: object, name: str, allow_punct: bool = False) -> str:
    """The package's character check, with the app's field name and an unknown-character hint."""
    try:
        return check_chars(value, name, tokenizer, allow_punct=allow_punct)
    except InputError:
        text = value.strip() if isinstance(value, str) else ""
        others = [ch for ch in text if not is_han(ch) and not (allow_punct and ch in COMMA + PERIOD + ",.，。")]
        message = None if others else unknown_chars_message(tokenizer, text, name)
        if message:
            raise InputError(message) from None
        raise


def theme_kwargs(tokenizer: CharTokenizer, theme: object) -> dict[str, Any]:
    """The theme box as a title or keywords: words separated by spaces (or ，、,) are keywords;
    one unbroken text is the title for a model that reads one (a control model), else a keyword."""
    if theme is None or (isinstance(theme, str) and not theme.strip()):
        return {}
    if not isinstance(theme, str):
        raise InputError(f"{THEME_NAME} must be text, not {type(theme).__name__}.")
    parts = theme.replace("，", " ").replace("、", " ").replace(",", " ").split()
    words = [validate_chars(tokenizer, part, THEME_NAME) for part in parts]
    if len(words) == 1 and has_controls(tokenizer):
        return {"title": words[0]}
    return {"keywords": words}


def _whole(value: object, name: str) -> object:
    """Sliders and number boxes send floats such as 4.0; the package wants whole numbers as int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _choice(table: Mapping[str, Any], value: object, name: str) -> Any:
    key = str(value).strip() if value is not None else ""
    if key not in table:
        choices = " or ".join(k for k in table if not k.isascii())
        raise InputError(f"{name} must be {choices}, not {value!r}.")
    return table[key]


def generation_kwargs(
    tokenizer: CharTokenizer,
    *,
    mode: object = "续写",
    characters: object = None,
    form: object = None,
    theme: object = None,
    **settings: Any,
) -> dict[str, Any]:
    """Map the app's inputs, by name, onto :meth:`tangpoem_hf.request.PoemRequest.build` keyword
    arguments: the mode and characters become ``first`` or ``acrostic``, the form radio and the
    theme box their settings, and slider floats whole numbers. ``settings`` (sliders, checkboxes:
    fields of :class:`~tangpoem_hf.options.GenerationOptions`) pass through; what is not given
    takes the package's default.
    """
    kind = _choice(MODES, mode, "mode (模式)")
    if kind == "acrostic" and isinstance(characters, str) and len(characters.strip()) > MAX_LINES:
        raise InputError(  # the shape error comes before any question of vocabulary
            f"An acrostic (藏头) has one head per line, so give {MIN_LINES} to {MAX_LINES} characters, "
            f"not {len(characters.strip())}."
        )
    chars = validate_chars(tokenizer, characters, CHARS_NAME)
    kwargs: dict[str, Any] = {**settings, **theme_kwargs(tokenizer, theme)}
    if form is not None:
        kwargs["form"] = _choice(FORMS, form, "form (体裁)")
    if kwargs.get("top_k") in (0, 0.0, ""):  # the slider's "no limit"
        kwargs["top_k"] = None
    if kwargs.get("seed") == "":  # an empty seed box
        kwargs["seed"] = None
    for name in kwargs.keys() & {name for name, option in OPTIONS.items() if option.metadata["kind"] is int}:
        kwargs[name] = _whole(kwargs[name], name)
    if kind == "acrostic":
        # One line per head; a line count that differs is refused by the decoder, as in the CLI.
        if not MIN_LINES <= len(chars) <= MAX_LINES:
            raise InputError(
                f"An acrostic (藏头) has one head per line, so give {MIN_LINES} to {MAX_LINES} characters, "
                f"not {len(chars)}."
            )
        kwargs["acrostic"] = chars
    else:
        kwargs["first"] = chars
    return kwargs


def generation_request(tokenizer: CharTokenizer, **values: Any) -> PoemRequest:
    """The app's inputs (those of :func:`generation_kwargs`, by name) as one validated request."""
    return PoemRequest.build(tokenizer, **generation_kwargs(tokenizer, **values))


def rewrite_ui_request(
    tokenizer: CharTokenizer,
    poem: object,
    keep: object,
    *,
    mode: object = "续写",
    characters: object = None,
    **values: Any,
) -> PoemRequest:
    """Rewrite the poem shown (its plain text, either script) keeping the lines numbered ``keep``
    (from 1, as the app shows them); ``values`` are :func:`generation_kwargs`' other inputs. Without
    characters, the poem's own first character (续写) or line heads (藏头) are kept."""
    if not isinstance(poem, str) or not poem.strip():
        raise InputError("There is no poem to rewrite yet: write one first.")
    # The poem is checked before its heads stand in for empty characters, so bad text blames the poem.
    validate_chars(tokenizer, "".join(poem.split()), POEM_NAME, allow_punct=True)
    numbers = [] if keep is None else list(keep) if isinstance(keep, (list, tuple)) else [keep]
    lines = split_rows(poem)
    count = len(lines)
    if not str(characters or "").strip():
        heads = "".join(line[0] for line in lines)
        characters = heads if _choice(MODES, mode, "mode (模式)") == "acrostic" else heads[:1]
    indices = []
    for number in numbers:
        n = _whole(number, "keep")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= count:
            raise InputError(f"Lines to keep are numbered from 1 to {count}, not {number!r}.")
        indices.append(n - 1)
    kwargs = generation_kwargs(tokenizer, mode=mode, characters=characters, **values)
    kwargs.pop("lines", None)  # the poem's own shape
    kwargs.pop("form", None)
    return rewrite_request(tokenizer, poem, sorted(set(indices)), **kwargs)


def line_choices(poem: Poem, script: str = "simplified") -> list[tuple[str, int]]:
    """(label, line number from 1) for the lock boxes and the one-line rewrite."""
    shown = poem.traditional() if script == "traditional" else poem
    return [(f"{i + 1} · {line}", i + 1) for i, line in enumerate(shown.lines)]


def candidate_choices(poem: Poem, script: str = "simplified") -> list[tuple[str, int]]:
    """(label, index) for the candidates drawn for one poem, best first: each label is its rank and
    the whole poem on one line (the ranking score, a mean log-probability, means nothing to a reader)."""
    ranked = [poem, *poem.others]
    shown = [p.traditional() if script == "traditional" else p for p in ranked]
    return [(f"{k + 1}. {p.text.replace(chr(10), '')}", k) for k, p in enumerate(shown)]


# --- rendering -------------------------------------------------------------------------------

PLACEHOLDER_HTML = (
    '<div class="tp-poem tp-empty" lang="zh">'
    '<p class="tp-hint">诗将在此显现<br><span class="tp-en">Your poem will appear here</span></p></div>'
)


def poem_html(poem: Poem | None, script: str = "simplified") -> str:
    """The poem as centred couplet rows, the growing line followed by empty slots and a cursor."""
    if poem is None:
        return PLACEHOLDER_HTML
    if script == "traditional":
        poem = poem.traditional()
    total = poem.total_lines or len(poem.lines)
    rows: list[str] = []
    cells: list[str] = []
    for i, line in enumerate(poem.lines):
        mark = COMMA if i % 2 == 0 and i + 1 < total else PERIOD
        cells.append(f'<span class="tp-line">{html.escape(line)}<span class="tp-punct">{mark}</span></span>')
        if i % 2 == 1 or i + 1 == total:
            rows.append("".join(cells))
            cells = []
    if not poem.finished:
        index = len(poem.lines)
        mark = COMMA if index % 2 == 0 and index + 1 < total else PERIOD
        done = html.escape(poem.partial)
        empty = '<span class="tp-slot"></span>' * (poem.form - len(poem.partial))
        cells.append(
            f'<span class="tp-line tp-growing">{done}<span class="tp-cursor"></span>{empty}'
            f'<span class="tp-punct tp-slot-punct">{mark}</span></span>'
        )
    if cells:
        rows.append("".join(cells))
    lang = "zh-Hant" if script == "traditional" else "zh-Hans"
    body = "".join(f'<p class="tp-row">{row}</p>' for row in rows)
    status = "" if poem.finished else " tp-streaming"
    meta = f"{form_title(poem.form, total)} · seed {poem.seed}"
    if script == "traditional":
        meta = to_traditional(meta)
    # A rule the user asked for that the poem had to break is said under it, never hidden.
    notes = "".join(f'<p class="tp-note">{html.escape(note)}</p>' for note in poem.notes)
    return f'<div class="tp-poem{status}" lang="{lang}">{body}<p class="tp-meta">{html.escape(meta)}</p>{notes}</div>'


def poem_text(poem: Poem | None, script: str = "simplified") -> str:
    """Plain text for copying and for API users: one couplet per row."""
    if poem is None:
        return ""
    return (poem.traditional() if script == "traditional" else poem).text


def script_of(value: object) -> str:
    """``simplified`` or ``traditional`` from the output-script radio."""
    return _choice(SCRIPTS, value, "output script (字体)")
