"""Where a request's keywords can still stand: the slot geometry keyword placement decides by.

A keyword stands whole inside one line, agreeing with every forced character it covers; the
other rules (tone, rhyme) may accept a window or not, which the caller says through ``ok``: a
function of (word, first slot, first character still to check) for one way the poem may still go.
:class:`~tangpoem_hf.verse.VerseRules` places the keywords with these functions, so a keyword
lands only where the rhyme and the tone pattern take it, whenever such a place exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import permutations

import torch

WindowCheck = Callable[[str, int, int], bool]  # (word, start slot, first index to check) → accepted


def _any(word: str, start: int, first: int) -> bool:
    return True


def fits_at(word: str, slot: int, slots: int, form: int, forced: dict[int, str], ok: WindowCheck = _any) -> bool:
    """Whether ``word`` can stand whole from ``slot``: inside one line, agreeing with every forced
    character it covers, and accepted by ``ok``."""
    if slot < 0 or slot + len(word) > slots or slot % form + len(word) > form:
        return False
    return all(forced.get(slot + j, ch) == ch for j, ch in enumerate(word)) and ok(word, slot, 0)


def keyword_windows(
    word: str, slots: int, form: int, forced: dict[int, str], start: int, ok: WindowCheck = _any
) -> list[int]:
    """Every slot at or after ``start`` where ``word`` can stand whole (see :func:`fits_at`)."""
    return [s for s in range(start, slots) if fits_at(word, s, slots, form, forced, ok)]


def keywords_fit(
    words: Sequence[str], slots: int, form: int, forced: dict[int, str], start: int, ok: WindowCheck = _any
) -> bool:
    """Whether ``words`` can all still stand whole, without overlapping, in the slots from ``start``.

    For a fixed order, placing each word at its earliest window is optimal (whether a window is
    accepted depends on its slots alone), so trying every order (at most 4! = 24) decides it exactly.
    """
    for order in permutations(words):
        at = start
        for word in order:
            windows = keyword_windows(word, slots, form, forced, at, ok)
            if not windows:
                break
            at = windows[0] + len(word)
        else:
            return True
    return False


@dataclass
class KeywordState:
    """Per poem of a batch: the keywords not yet placed, the one being written, and what the
    model thought of each pending word's first character at the slots it could have started."""

    words: tuple[str, ...]
    pending: list[set[int]]
    active: list[tuple[int, int] | None]  # (word, next character) while a word is being written
    seen: list[dict[int, list[float]]]  # per word: [sum, count] of its first character's probability

    @classmethod
    def start(cls, words: tuple[str, ...], open_words: Sequence[int], batch_size: int) -> KeywordState:
        return cls(
            words,
            [set(open_words) for _ in range(batch_size)],
            [None] * batch_size,
            [{} for _ in range(batch_size)],
        )

    def select(self, rows: torch.Tensor) -> KeywordState:
        """The keyword progress of the poems ``rows``, copied (see
        :meth:`~tangpoem_hf.constraints.Constraint.select`)."""
        r = rows.tolist()
        return KeywordState(
            self.words,
            [set(self.pending[i]) for i in r],
            [self.active[i] for i in r],
            [{w: list(v) for w, v in self.seen[i].items()} for i in r],
        )

    def missing(self, poem: int) -> list[str]:
        """The words poem ``poem`` did not place whole."""
        active = self.active[poem]
        return [self.words[w] for w in sorted(self.pending[poem]) + ([active[0]] if active else [])]

    def advance(self, poem: int, ch: str, starts: Sequence[int]) -> None:
        """Record ``ch`` drawn: it continues the active word, or starts one of ``starts``."""
        active = self.active[poem]
        if active is not None:
            word, at = active
            if ch != self.words[word][at]:  # another rule won (a forced slot): the word starts over
                self.pending[poem].add(word)
                self.active[poem] = None
            else:
                self.active[poem] = (word, at + 1) if at + 1 < len(self.words[word]) else None
            return
        started = [w for w in starts if self.words[w][0] == ch]
        if started:
            word = started[0]
            self.pending[poem].discard(word)
            self.active[poem] = (word, 1) if len(self.words[word]) > 1 else None
