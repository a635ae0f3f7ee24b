"""What to write, checked once: every user value passes here on its way to the decoder (and every
row of a file to score, on its way to :mod:`~tangpoem_hf.scoring`).

The CLI, the app, the server and the Python API all hand the decoder one :class:`PoemRequest`,
built by :meth:`PoemRequest.build` from the settings of
:class:`~tangpoem_hf.options.GenerationOptions` (whose defaults and ranges it applies). Bad input
gets one clear ``InputError`` sentence, never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .constraints import Constraint, NoRepeat, OneSeason, PoemSpec, selects_rows
from .control import MAX_KEYWORDS, MAX_TITLE, Control, has_controls
from .errors import InputError
from .keywords import keywords_fit
from .options import (
    DEFAULT_LINES,
    MAX_BATCH,
    MAX_LINES,
    MIN_LINES,
    OPTIONS,
    GenerationOptions,
    check_switches,
    verse_rules,
)
from .prosody import poem_lines
from .text import COMMA, PERIOD, clean_poem_text, is_han, normalize_punctuation, punctuate
from .tokenizer import CharTokenizer
from .verse import verse_constraints

if TYPE_CHECKING:
    from .modeling import TangPoemLSTM

MAX_INPUT_CHARS = 200


def _describe(chars: Sequence[str]) -> str:
    return ", ".join(repr(ch) if ch.isprintable() and not ch.isspace() else f"U+{ord(ch):04X}" for ch in chars)


def check_chars(value: object, name: str, tokenizer: CharTokenizer, allow_punct: bool = False) -> str:
    """Han characters the model knows, converted into its script; else one clear sentence."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, not {type(value).__name__}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{name} contains invalid Unicode (an unpaired surrogate).") from None
    text = value.strip()
    if not text:
        raise InputError(f"{name} is empty: give at least one Chinese character.")
    if len(text) > MAX_INPUT_CHARS:
        raise InputError(f"{name} is too long: {len(text)} characters, at most {MAX_INPUT_CHARS}.")
    if allow_punct:
        text = normalize_punctuation(text)
    bad = sorted({ch for ch in text if not is_han(ch) and not (allow_punct and ch in COMMA + PERIOD)})
    if bad:
        raise InputError(f"{name} may hold only Chinese characters, but contains {_describe(bad)}.")
    converted = tokenizer.normalize(text)
    unknown = sorted({ch for ch in converted if ch not in tokenizer})
    if unknown:
        raise InputError(f"The model does not know the character(s) {''.join(unknown)} in {name}.")
    return converted


def _show(x: float) -> str:
    return f"2**{(x + 1).bit_length() - 1} - 1" if isinstance(x, int) and x > 2**32 else f"{x:g}"


def check_number(name: str, value: object) -> Any:
    """A numeric setting of :class:`GenerationOptions`, of its kind and within its bounds."""
    meta = OPTIONS[name].metadata
    kind = meta["kind"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name} must be a number, not {value!r}.")
    if kind is int and not float(value).is_integer():
        raise InputError(f"{name} must be a whole number, not {value!r}.")
    if not math.isfinite(value):
        raise InputError(f"{name} must be finite, not {value!r}.")
    low, high = meta["bounds"]
    if high is None:
        if value < low:
            raise InputError(f"{name} must be at least {_show(low)} (or unset for no limit), not {value!r}.")
    elif meta["open_low"]:
        if not low < value <= high:
            raise InputError(f"{name} must be above {_show(low)} and at most {_show(high)}, not {value!r}.")
    elif not low <= value <= high:
        raise InputError(f"{name} must be between {_show(low)} and {_show(high)}, not {value!r}.")
    return kind(value)


def check_choice(name: str, value: object) -> str:
    """A setting of :class:`GenerationOptions` with named choices (``search``, ``score``), one of them."""
    choices = OPTIONS[name].metadata["choices"]
    if value not in choices:
        raise InputError(f"{name} must be {' or '.join(repr(c) for c in choices)}, not {value!r}.")
    return str(value)


def read_title(tokenizer: CharTokenizer, title: object) -> tuple[str, tuple[str, ...]]:
    """A title as people type it: its Chinese characters (spaces, punctuation and other scripts are
    dropped), cut to the ``MAX_TITLE`` characters a control model reads, with a note when cut."""
    if title is None:
        return "", ()
    if not has_controls(tokenizer):
        raise InputError(
            "This model was trained without a control segment, so it cannot read a title: give keywords instead."
        )
    if not isinstance(title, str):
        raise InputError(f"title must be text, not {type(title).__name__}.")
    han = "".join(ch for ch in title if is_han(ch))
    if title.strip() and not han:
        raise InputError(f"title holds no Chinese characters: {title.strip()!r}.")
    text = check_chars(han, "title", tokenizer)
    if len(text) <= MAX_TITLE:
        return text, ()
    note = f"The title was cut to its first {MAX_TITLE} characters ({text[:MAX_TITLE]}): the model reads no more."
    return text[:MAX_TITLE], (note,)


def make_spec(
    tokenizer: CharTokenizer, options: GenerationOptions, title: str = "", keep: Mapping[int, str] | None = None
) -> PoemSpec:
    """Validate the shape request; the acrostic fixes the line count to its number of heads.

    ``keep`` maps 0-based line indices to lines kept whole (a rewrite): their characters are forced.
    ``title`` is the one :func:`read_title` gave; the keywords (a list, or one text of words
    separated by spaces) must each fit in a line, and all together in the poem around the forced
    characters.
    """
    first, acrostic, form, lines = options.first, options.acrostic, options.form, options.lines
    if isinstance(form, str) and form.strip() in ("5", "7", "五言", "七言"):
        form = 5 if form.strip() in ("5", "五言") else 7
    if isinstance(form, bool) or form not in OPTIONS["form"].metadata["choices"]:
        raise InputError(f"form must be 5 (五言) or 7 (七言), not {form!r}.")
    if first is not None and acrostic is not None:
        raise InputError("Give either first characters or acrostic heads, not both.")
    forced: dict[int, str] = {}
    if acrostic is not None:
        if isinstance(acrostic, str) and len(acrostic.strip()) > MAX_LINES:  # the shape error comes first
            raise InputError(
                f"An acrostic has one head per line, at most {MAX_LINES} heads; got {len(acrostic.strip())}."
            )
        heads = check_chars(acrostic, "acrostic", tokenizer)
        if not MIN_LINES <= len(heads) <= MAX_LINES:
            raise InputError(f"An acrostic has one head per line: {MIN_LINES} to {MAX_LINES} heads, not {len(heads)}.")
        if lines is not None and lines != len(heads):
            raise InputError(f"An acrostic of {len(heads)} heads makes {len(heads)} lines, not {lines!r}.")
        lines = len(heads)
        forced = {i * form: ch for i, ch in enumerate(heads)}
    lines = check_number("lines", DEFAULT_LINES if lines is None else lines)
    if first is not None:
        chars = check_chars(first, "first", tokenizer)
        if len(chars) > form * lines:
            raise InputError(f"first has {len(chars)} characters but the poem holds only {form * lines}.")
        forced = dict(enumerate(chars))
    kept = _kept_lines(tokenizer, keep or {}, form, lines, forced)
    for index, line in kept.items():
        forced.update({index * form + c: ch for c, ch in enumerate(line)})
    keywords = _keywords(tokenizer, options.keywords, form, lines)
    spec = PoemSpec(form, lines, forced, title, keywords, frozenset(kept))
    words = [spec.keywords[i] for i in spec.open_keywords()]
    if not keywords_fit(words, form * lines, form, forced, 0):
        raise InputError(
            f"The keywords {' '.join(words)} cannot all stand whole in {lines} lines of {form} characters "
            "around the characters you gave."
        )
    return spec


def _keywords(tokenizer: CharTokenizer, keywords: str | Sequence[str] | None, form: int, lines: int) -> tuple[str, ...]:
    """The keywords checked one by one against the vocabulary and the shape (their fit around the
    forced characters is checked by :func:`make_spec`)."""
    if keywords is None:
        return ()
    if isinstance(keywords, str):
        keywords = keywords.replace("，", " ").replace(",", " ").replace("、", " ").split()
        if not keywords:
            raise InputError("keywords is empty: give one to four words separated by spaces.")
    if not isinstance(keywords, (list, tuple)) or not 1 <= len(keywords) <= MAX_KEYWORDS:
        raise InputError(f"Give one to {MAX_KEYWORDS} keywords, not {keywords!r}.")
    words = tuple(check_chars(w, "keyword", tokenizer) for w in keywords)
    for word in words:
        if len(word) > form:
            raise InputError(f"The keyword {word} has {len(word)} characters but a line holds only {form}.")
    if len(set(words)) < len(words):
        raise InputError(f"A keyword is given twice in {' '.join(words)}.")
    if sum(map(len, words)) > form * lines:
        raise InputError(f"The keywords {' '.join(words)} have more characters than the poem ({form * lines}).")
    return words


def _kept_lines(
    tokenizer: CharTokenizer, keep: Mapping[int, str], form: int, lines: int, forced: Mapping[int, str]
) -> dict[int, str]:
    """Kept lines checked against the shape and the other forced characters (acrostic heads, first)."""
    kept = {}
    for index, line in keep.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < lines:
            raise InputError(f"A kept line must be a line index from 0 to {lines - 1}, not {index!r}.")
        text = check_chars(line, f"kept line {index + 1}", tokenizer)
        if len(text) != form:
            raise InputError(f"Kept line {index + 1} has {len(text)} characters, not {form}.")
        for c, ch in enumerate(text):
            want = forced.get(index * form + c)
            if want is not None and want != ch:
                raise InputError(f"Kept line {index + 1} has {ch} where the poem must have {want}.")
        kept[index] = text
    return kept


@dataclass(frozen=True)
class PoemRequest:
    """What to write, validated once by :meth:`build`: the CLI, the app, the server and the
    Python API all hand the decoder one of these.

    Poem ``i`` of ``num`` uses seed ``seed + i``, so each equals the poem of that seed alone.
    ``notes`` are said with every poem (a title that had to be cut).
    """

    spec: PoemSpec
    temperature: float
    top_k: int  # 0: no limit
    top_p: float
    seed: int
    search: str  # "poem" (rank whole poems) or "lines" (a beam over lines)
    beam: int  # line search: partial poems kept after each line
    line_candidates: int  # line search: lines drawn for each kept partial poem
    score: str  # "mean" or "sum" log-probability
    coherence: float  # weight of the cross-line coherence (see tangpoem_hf.coherence) in the score
    constraints: tuple[Constraint, ...] = ()
    num: int = 1
    candidates: int = 1
    notes: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        """Rows decoded per poem: its candidates, or for a line search its beam × line candidates."""
        return self.beam * self.line_candidates if self.search == "lines" else self.candidates

    @classmethod
    def build(
        cls,
        tokenizer: CharTokenizer,
        *,
        constraints: Sequence[Constraint] = (),
        keep: Mapping[int, str] | None = None,
        **settings: Any,
    ) -> PoemRequest:
        """Check every value (one clear ``InputError`` sentence for the first bad one).

        ``settings`` are the fields of :class:`~tangpoem_hf.options.GenerationOptions` (their help
        says what each does; unset ones take its defaults, and the verse rules of
        :func:`~tangpoem_hf.options.verse_rules`). ``first`` or ``acrostic`` (heads, one per line)
        start the poem; ``title`` (a control model only) is read by the model before the poem;
        ``keywords`` each stand whole in the poem where the model likes them best
        (:class:`~tangpoem_hf.verse.VerseRules`, which places them with rhyme and tone);
        ``search="lines"`` draws ``line_candidates`` lines for each of the ``beam`` best partial
        poems, line after line (:class:`~tangpoem_hf.decoding.LineWalk`), while ``search="poem"``
        draws ``candidates`` whole poems for each of the ``num`` poems; either keeps the best by
        ``score`` (:func:`~tangpoem_hf.decoding.score_lines`) plus ``coherence`` times the lines'
        coherence. ``constraints`` adds your own rules; ``keep`` maps line indices to lines kept whole (see
        :func:`~tangpoem_hf.decoding.rewrite_poem`).
        """
        options = GenerationOptions(**settings)
        title, notes = read_title(tokenizer, options.title)
        spec = make_spec(tokenizer, options, title, keep)
        t = check_number("temperature", options.temperature)
        k = 0 if options.top_k is None else check_number("top_k", options.top_k)
        p = check_number("top_p", options.top_p)
        s = int.from_bytes(os.urandom(4), "little") if options.seed is None else check_number("seed", options.seed)
        n = check_number("num", options.num)
        c = check_number("candidates", options.candidates)
        search, b = check_choice("search", options.search), check_number("beam", options.beam)
        lc = check_number("line_candidates", options.line_candidates)
        if search == "lines":
            if c > 1:
                raise InputError(
                    "candidates ranks whole poems: a line search draws beam × line_candidates instead "
                    "(set search to 'poem' for candidates)."
                )
            rigid = next((r for r in constraints if not selects_rows(r)), None)
            if rigid is not None:
                raise InputError(
                    f"The rule {rigid.name!r} has no select method, so a line search cannot keep its state: "
                    "use search='poem'."
                )
            if n * b * lc > MAX_BATCH:
                raise InputError(f"num × beam × line_candidates must be at most {MAX_BATCH}, not {n * b * lc}.")
        elif n * c > MAX_BATCH:
            raise InputError(f"num × candidates must be at most {MAX_BATCH}, not {n * c}.")
        score = check_choice("score", options.score)
        w = check_number("coherence", options.coherence)
        check_switches(options)
        rhyme, tone = verse_rules(options)
        verse = verse_constraints(rhyme=rhyme, tone=tone, rhyme_group=options.rhyme_group, keywords=bool(spec.keywords))
        house = [*([NoRepeat()] if options.no_repeat else []), *([OneSeason()] if options.one_season else [])]
        rules = (*verse, *house, *constraints)
        return cls(spec, t, k, p, s, search, b, lc, score, w, rules, n, c, notes)


def as_request(model: TangPoemLSTM, request: PoemRequest | None, kwargs: Mapping[str, Any]) -> PoemRequest:
    """The request given, or one built from the keyword arguments (never both)."""
    if request is not None:
        if kwargs:
            raise InputError(f"Give either a PoemRequest or keyword arguments, not both ({', '.join(kwargs)}).")
        return request
    tok = model.tokenizer
    assert tok is not None, "a model loaded with from_pretrained carries its tokenizer"
    return PoemRequest.build(tok, **kwargs)


def rewrite_request(tokenizer: CharTokenizer, poem: object, keep: Iterable[int], **kwargs: Any) -> PoemRequest:
    """The request that rewrites ``poem`` (a :class:`~tangpoem_hf.decoding.Poem`, its text or its
    lines) keeping the lines at indices ``keep``; see :func:`~tangpoem_hf.decoding.rewrite_poem`."""
    lines = poem_lines(poem) if isinstance(poem, str) else list(getattr(poem, "lines", poem))
    sizes = {len(line) for line in lines}
    if not lines or len(sizes) != 1 or next(iter(sizes)) not in (5, 7):
        raise InputError("The poem to rewrite must have lines of 5 or 7 characters each, all the same length.")
    for name, value in (("form", len(lines[0])), ("lines", len(lines))):
        if kwargs.get(name, value) != value:
            raise InputError(f"A rewrite keeps the poem's {name} ({value}), not {kwargs[name]!r}.")
    kwargs = {**kwargs, "form": len(lines[0])}
    if kwargs.get("acrostic") is None:
        kwargs["lines"] = len(lines)
    wanted = list(keep)
    if any(isinstance(i, bool) or not isinstance(i, int) for i in wanted):
        raise InputError(f"Lines to keep are given by their 0-based index, not {wanted!r}.")
    keep_lines = {i: lines[i] if 0 <= i < len(lines) else "" for i in wanted}
    return PoemRequest.build(tokenizer, keep=keep_lines, **kwargs)


# Poems to score (tangpoem perplexity): the same checks, a row at a time ----------------------------


def read_scoring_file(path: Path, simplified: bool) -> list[dict]:
    """Poems to score: one per line of a text file, or JSON Lines rows with a ``text`` field (other
    fields, such as ``title`` and ``keywords``, are kept). Bare poems are cut into lines by their
    length (:func:`punctuate`), so a poem scores the same with or without its ，。; a length that
    fits no form is an error naming the row."""
    try:
        raw = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text.") from None
    rows = []
    for number, line in enumerate(raw, 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
                text = row["text"]
                if not isinstance(text, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise InputError(f"{path} line {number} is not a JSON object with a text field.") from None
        else:
            row, text = {}, line
        text = punctuate(clean_poem_text(text, simplified=simplified))
        if text and all(is_han(ch) for ch in text):
            raise InputError(
                f"{path} line {number} has {len(text)} characters without ，。, which fits no 五言 or 七言 "
                "form (20, 28, 40, 56 … characters): add its punctuation."
            )
        if text:
            rows.append({**row, "text": text})
    if not rows:
        raise InputError(f"{path} holds no poems (one per line, or JSON Lines with a text field).")
    return rows


def scoring_theme(row: dict, number: int) -> tuple[str, tuple[str, ...]]:
    """A scoring row's ``title`` and ``keywords`` (a list, or words split at spaces) checked as
    ``generate`` checks them; anything else is one sentence naming the poem, never a silent drop.

    A title keeps its Han characters up to ``MAX_TITLE`` (as training reads corpus titles, whose
    「·」 and 「（一作…）」 notes are common) but may hold no letters or digits; keywords are one to
    ``MAX_KEYWORDS`` distinct words of Chinese characters. Whether the model knows the characters is
    :func:`scoring_control`'s question.
    """
    title, keywords = row.get("title") or "", row.get("keywords") or []
    if isinstance(keywords, str):
        keywords = keywords.replace("，", " ").replace(",", " ").replace("、", " ").split()
    if not isinstance(title, str) or not isinstance(keywords, list) or not all(isinstance(w, str) for w in keywords):
        raise InputError(f"Poem {number}: title must be text and keywords a list of words (or one text).")
    bad = sorted({ch for ch in title if not is_han(ch) and unicodedata.category(ch)[0] in "LN"})
    if bad or (title.strip() and not any(is_han(ch) for ch in title)):
        shown = ", ".join(map(repr, bad)) or repr(title.strip())
        raise InputError(f"Poem {number}: its title may hold only Chinese characters, but contains {shown}.")
    words = tuple(w.strip() for w in keywords if w.strip())
    if len(words) > MAX_KEYWORDS:
        raise InputError(f"Poem {number}: give one to {MAX_KEYWORDS} keywords, not {len(words)}.")
    for word in words:
        if not all(is_han(ch) for ch in word):
            raise InputError(f"Poem {number}: the keyword {word!r} may hold only Chinese characters.")
    if len(set(words)) < len(words):
        raise InputError(f"Poem {number}: a keyword is given twice in {' '.join(words)}.")
    return "".join(ch for ch in title.split("（")[0] if is_han(ch))[:MAX_TITLE], words


def scoring_control(tokenizer: CharTokenizer, row: dict, number: int) -> tuple[Control, str]:
    """A scoring row's title and keywords (:func:`scoring_theme`) as the control a control model
    reads before the poem, and the characters of them the model lacks: a poem with one is scored
    without its theme (a rare character in one title must not refuse a whole file)."""
    title, words = scoring_theme(row, number)
    title, words = tokenizer.normalize(title), tuple(tokenizer.normalize(w) for w in words)
    unknown = "".join(sorted({ch for ch in title + "".join(words) if ch not in tokenizer}))
    if unknown:
        return Control(), unknown
    return Control(title, words), ""
