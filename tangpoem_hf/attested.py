"""What the Tang corpus attests, shipped as small resources so generation works offline.

``resources/attested.json`` and ``resources/bigrams.npz`` are built by
``scripts/build_corpus_resources.py`` (which says how each is counted):

* :func:`doublings`: characters whose 叠字 real poems use (萋萋, 漠漠; never 乡乡);
* :func:`glued`: the characters a doubled one ends a word after and is never doubled after (归去, no 归去去);
* :func:`bound_words`: first halves of bound two-character words and their partner (徘→徊);
* :func:`rhyme_readings`: the 平声 groups a several-reading character is rhymed in (居: 鱼 only);
* :func:`unattested_bigram_share`: the share of a poem's in-line character bigrams the corpus never
  has, a cheap signal of broken words.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from .text import split_lines

RESOURCES = Path(__file__).parent / "resources"
ATTESTED_PATH = RESOURCES / "attested.json"
BIGRAMS_PATH = RESOURCES / "bigrams.npz"


@lru_cache(maxsize=1)
def _attested() -> dict:
    return json.loads(ATTESTED_PATH.read_text(encoding="utf-8"))


def doublings() -> frozenset[str]:
    """Characters whose doubling (叠字) the corpus attests at a word start."""
    return frozenset(_attested()["doublings"])


def glued() -> dict[str, str]:
    """Doubled character → the characters it forms a common word with when it follows them, and is
    never doubled after (去: 归…): there 归去去 reads as a word and a stray repeat, not as 去去."""
    return dict(_attested()["glued"])


def bound_words() -> dict[str, str]:
    """First half → the one character that almost always follows it in the corpus (徘 → 徊)."""
    return dict(_attested()["bound"])


def rhyme_readings() -> dict[str, tuple[str, ...]]:
    """Character → the 平声 group names it is rhymed in, for characters whose rhymes drop a listed group."""
    return {ch: tuple(groups) for ch, groups in _attested()["rhymes"].items()}


def encode_varints(values: np.ndarray) -> np.ndarray:
    """Non-negative integers as LEB128 bytes (7 bits a byte, high bit: more follow)."""
    out = bytearray()
    for x in values.tolist():
        while x >= 0x80:
            out.append((x & 0x7F) | 0x80)
            x >>= 7
        out.append(x)
    return np.frombuffer(bytes(out), dtype=np.uint8)


def decode_varints(data: np.ndarray) -> np.ndarray:
    """The inverse of :func:`encode_varints`, vectorised."""
    data = data.astype(np.int64)
    last = data < 0x80
    which = np.concatenate([[0], np.cumsum(last)[:-1]])  # the value each byte belongs to
    starts = np.flatnonzero(np.concatenate([[True], last[:-1]]))
    shift = 7 * (np.arange(len(data)) - starts[which])
    return np.bincount(which, weights=(data & 0x7F) << shift, minlength=int(last.sum())).astype(np.int64)


@lru_cache(maxsize=1)
def _bigrams() -> tuple[dict[str, int], np.ndarray]:
    with np.load(BIGRAMS_PATH) as payload:
        chars = "".join(map(chr, payload["chars"].tolist()))
        codes = np.cumsum(decode_varints(payload["deltas"]))
    return {ch: i for i, ch in enumerate(chars)}, codes


def attested_bigrams(pairs: Sequence[str]) -> list[bool]:
    """Whether each two-character string stands inside some line of the corpus."""
    index, codes = _bigrams()
    n = len(index)
    keys = np.array([index[a] * n + index[b] if a in index and b in index else -1 for a, b in pairs], dtype=np.int64)
    at = np.searchsorted(codes, keys).clip(max=len(codes) - 1)
    return ((keys >= 0) & (codes[at] == keys)).tolist()


def unattested_bigram_share(poem: str | Sequence[str]) -> float:
    """The share of the character bigrams inside the poem's lines that no corpus line holds.

    ``poem`` is its lines, or one text with ，/。; 0.0 for a poem without bigrams.
    """
    lines = split_lines(poem) if isinstance(poem, str) else list(poem)
    pairs = [line[i : i + 2] for line in lines for i in range(len(line) - 1)]
    if not pairs:
        return 0.0
    return 1.0 - sum(attested_bigrams(pairs)) / len(pairs)
