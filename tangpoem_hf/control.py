"""The control segment a model reads before the poem: its form, and optionally a title and keywords.

A control model reads ``<bos> <form:七绝> [<title> 题目…] [<kw> 词 <kw> 词 …] <poem>`` and then the
poem and ``<eos>``. Title and keywords are spelled in ordinary characters; the control tokens are
appended to the vocabulary, so no existing id moves. The control is context only: its positions
are never training or scoring targets (:func:`control_positions`).

Keywords are extracted from each poem itself (:func:`extract_keywords`, docs/guide/control.md): TF-IDF of
the character 2-grams that stand where a word can stand in a line (the caesura of 五言 and 七言).
During training the title and the keywords are each dropped at random, per poem and epoch, as a
pure function of (seed, epoch), so every combination works at generation and ``--resume`` stays exact.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .text import FORM_CLASSES, classify_form, is_han, split_lines, to_simplified
from .tokenizer import CharTokenizer

FORM_TOKENS = {form: f"<form:{form}>" for form in FORM_CLASSES}
TITLE, KEYWORD, POEM = "<title>", "<kw>", "<poem>"
CONTROL_TOKENS = (*FORM_TOKENS.values(), TITLE, KEYWORD, POEM)
MAX_KEYWORDS = 4
MAX_TITLE = 16  # characters of a title the model reads (99% of the corpus's titles fit)
KEYWORD_METHOD = "tfidf-2gram-caesura-pmi-v1"  # part of the cache key: change it when the method changes
# Where a two-character word may start in a line: 五言 reads 2+3 (2+2+1 or 2+1+2), 七言 2+2+3.
WORD_STARTS = {5: (0, 2, 3), 7: (0, 2, 4, 5)}
# Function characters (虚词, and 一/几 of counts): a 2-gram holding one is no theme (何处, 不见, 一株).
FUNCTION_CHARS = frozenset("不无何谁莫未已犹尚惟唯况焉岂而之乎者也亦又且乃其此彼自欲应须可将与为于以所是若一几")


def with_controls(tokenizer: CharTokenizer) -> CharTokenizer:
    """The vocabulary with the control tokens appended (ids of the existing tokens unchanged)."""
    extra = [t for t in CONTROL_TOKENS if t not in tokenizer]
    return CharTokenizer(tokenizer.tokens + extra, simplified=tokenizer.simplified) if extra else tokenizer


def has_controls(tokenizer: CharTokenizer) -> bool:
    """Whether a model with this vocabulary reads a control segment (see ``TangPoemConfig.control``)."""
    return all(t in tokenizer for t in CONTROL_TOKENS)


@dataclass(frozen=True)
class Control:
    """What a control model is told about one poem besides its form."""

    title: str = ""
    keywords: tuple[str, ...] = ()


def clean_title(title: str, simplified: bool = True) -> str:
    """A corpus title as the model reads it: its Han characters, simplified, at most ``MAX_TITLE``."""
    title = to_simplified(title) if simplified else title
    return "".join(ch for ch in title.split("（")[0] if is_han(ch))[:MAX_TITLE]


def control_ids(tokenizer: CharTokenizer, form: str, control: Control = Control()) -> list[int]:
    """``<bos>`` and the control segment up to ``<poem>``: what a control model reads before a poem.

    Characters the vocabulary lacks are left out (a corpus title may hold rare ones); a user's
    title and keywords were checked character by character before they got here.
    """
    index = tokenizer.index
    ids = [tokenizer.bos_id, index[FORM_TOKENS[form]]]
    if control.title:
        ids += [index[TITLE]] + [index[ch] for ch in control.title if ch in index]
    for word in control.keywords:
        ids += [index[KEYWORD]] + [index[ch] for ch in word if ch in index]
    return ids + [index[POEM]]


def control_positions(ids: np.ndarray, form_ids: Sequence[int], poem_id: int) -> np.ndarray:
    """A bool per position of a token stream: True from each form token through its ``<poem>``.

    Targets at these positions are context, never scored; works on one poem or a packed stream.
    """
    opened = np.cumsum(np.isin(ids, form_ids))
    closed = np.cumsum(ids == poem_id) - (ids == poem_id)  # <poem> tokens strictly before
    return opened > closed


# --- keywords -----------------------------------------------------------------------------------


def _word_bigrams(line: str) -> list[str]:
    """The 2-grams of a line that start where a word may start (every start in an irregular line)."""
    starts = WORD_STARTS.get(len(line), range(len(line) - 1))
    return [line[i : i + 2] for i in starts if all(is_han(ch) for ch in line[i : i + 2])]


def extract_keywords(texts: Sequence[str], k: int = MAX_KEYWORDS, min_count: int = 20) -> list[tuple[str, ...]]:
    """Up to ``k`` keywords per poem: its word-like 2-grams ranked by TF-IDF over ``texts``.

    A 2-gram is word-like when, over the 五言/七言 lines of ``texts``, it occurs at least
    ``min_count`` times, at least 90% of them where a word may start (never across the caesura),
    its characters stick together (PMI ≥ 2 nats), and it holds no function character (不, 何, 之…).
    Ties go to the earlier word; keywords share no character (明月 and 月光 are one place).
    Deterministic: the same texts give the same keywords on every machine.
    """
    chars: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    aligned: Counter[str] = Counter()
    grams = []
    for text in texts:
        poem: Counter[str] = Counter()
        for line in split_lines(text):
            chars.update(line)
            found = _word_bigrams(line)
            if len(line) in WORD_STARTS:
                anywhere.update(line[i : i + 2] for i in range(len(line) - 1))
                aligned.update(found)
            poem.update(found)
        grams.append(poem)
    total_chars, total_pairs = sum(chars.values()) or 1, sum(anywhere.values()) or 1

    def word_like(g: str) -> bool:
        n = anywhere[g]
        if n < min_count or aligned[g] < 0.9 * n or set(g) & FUNCTION_CHARS:
            return False
        return math.log(n / total_pairs / (chars[g[0]] / total_chars) / (chars[g[1]] / total_chars)) >= 2.0

    df = Counter(g for poem in grams for g in poem)
    words = {g for g in df if word_like(g)}
    out = []
    for poem in grams:  # Counter keeps first-seen order, so the stable sort breaks ties by position
        scored = [(c * math.log(len(texts) / df[g]), g) for g, c in poem.items() if g in words]
        scored.sort(key=lambda sg: -sg[0])
        chosen: list[str] = []
        for _, g in scored:
            if len(chosen) < k and not set(g) & set("".join(chosen)):
                chosen.append(g)
        out.append(tuple(chosen))
    return out


def _keyword_cache(texts: Sequence[str], cache_dir: Path, min_count: int) -> Path:
    key = hashlib.sha256("\n".join([KEYWORD_METHOD, str(min_count), *texts]).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"keywords-{key}.json"


def store_keywords(texts: Sequence[str], keywords: Sequence[tuple[str, ...]], cache_dir: Path, min_count: int) -> None:
    """Keep ``keywords`` (of ``texts``) where :func:`cached_keywords` looks, written atomically."""
    path = _keyword_cache(texts, cache_dir, min_count)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps([list(k) for k in keywords], ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def cached_keywords(texts: Sequence[str], cache_dir: Path, min_count: int = 20) -> list[tuple[str, ...]]:
    """:func:`extract_keywords`, stored in ``cache_dir`` by a hash of the method and the texts."""
    path = _keyword_cache(texts, cache_dir, min_count)
    if path.exists():
        return [tuple(words) for words in json.loads(path.read_text(encoding="utf-8"))]
    keywords = extract_keywords(texts, min_count=min_count)
    store_keywords(texts, keywords, cache_dir, min_count)
    return keywords


def dynasty_groups(dynasties: Sequence[str]) -> list[list[int]]:
    """The positions of each dynasty's poems, dynasties in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(dynasties):
        groups.setdefault(d, []).append(i)
    return list(groups.values())


def poem_keywords(
    texts: Sequence[str], dynasties: Sequence[str], cache_dir: Path, min_count: int = 20
) -> list[tuple[str, ...]]:
    """Each poem's keywords, ranked among the poems of its own dynasty: a Tang poem gets the keywords
    it gets when Tang is read alone, whether or not Song is read beside it."""
    out: list[tuple[str, ...]] = [()] * len(texts)
    for group in dynasty_groups(dynasties):
        for i, words in zip(group, cached_keywords([texts[i] for i in group], cache_dir, min_count)):
            out[i] = words
    return out


# --- training: the control of each poem, parts dropped per epoch ----------------------------------


class ControlledPoems:
    """Training poems with their control segments; each epoch drops titles and keywords at random.

    ``epoch(e)`` is a pure function of (seed, e): a poem keeps its title with probability
    ``1 - drop_title`` and its keywords with ``1 - drop_keywords`` (then a random 1..all of them,
    in random order, so neither count nor order carries information).
    """

    def __init__(
        self,
        texts: Sequence[str],
        controls: Sequence[Control],
        tokenizer: CharTokenizer,
        seed: int,
        drop_title: float = 0.5,
        drop_keywords: float = 0.5,
    ) -> None:
        self.tok, self.seed = tokenizer, seed
        self.drop_title, self.drop_keywords = drop_title, drop_keywords
        self.forms = [classify_form(t) for t in texts]
        self.bodies = [np.asarray(tokenizer.encode("".join(t.split()), add_eos=True), dtype=np.int64) for t in texts]
        self.controls = list(controls)
        self.form_ids = [tokenizer.index[t] for t in FORM_TOKENS.values()]
        self.poem_id = tokenizer.index[POEM]
        self.full = [self._encode(i, self.controls[i]) for i in range(len(texts))]
        self.expected_total = round(sum(len(b) + 3 + self._expected_extra(c) for b, c in zip(self.bodies, controls)))

    def _encode(self, i: int, control: Control) -> np.ndarray:
        context = np.asarray(control_ids(self.tok, self.forms[i], control), dtype=np.int64)
        return np.concatenate([context, self.bodies[i]])

    def _expected_extra(self, control: Control) -> float:
        """Mean tokens of a poem's title and keywords over epochs: kept keywords are a uniform
        1..n of them, so each stands in an epoch's control with probability (n + 1) / 2n."""
        title = (1 + len(control.title)) * (1 - self.drop_title) if control.title else 0.0
        n = len(control.keywords)
        words = sum(1 + len(w) for w in control.keywords) * (n + 1) / (2 * n) if n else 0.0
        return title + words * (1 - self.drop_keywords)

    def __len__(self) -> int:
        return len(self.bodies)

    def lengths(self) -> np.ndarray:
        """Each poem's length with its whole control: no epoch's poem is longer."""
        return np.array([len(p) for p in self.full])

    def epoch(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, 14])
        draws = rng.random((len(self), 2))
        poems = []
        for i, control in enumerate(self.controls):
            title = control.title if draws[i, 0] >= self.drop_title else ""
            words: tuple[str, ...] = ()
            if control.keywords and draws[i, 1] >= self.drop_keywords:
                count = int(rng.integers(1, len(control.keywords) + 1))
                words = tuple(control.keywords[j] for j in rng.permutation(len(control.keywords))[:count])
            same = (title, words) == (control.title, control.keywords)
            poems.append(self.full[i] if same else self._encode(i, Control(title, words)))
        return poems
