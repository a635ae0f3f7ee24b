"""The decoding constraints' interface and the request's slot layout.

A :class:`Constraint` is a small rule behind one interface, like transformers' LogitsProcessors:
it says which ids may stand in a slot and watches what was drawn. It holds only its settings. The
per-poem state it needs (patterns still possible, rhyme characters used, …) is created by
:meth:`Constraint.start` and kept by the decoder's walk, so one constraint object can serve any
number of requests at once (the server decodes many requests in one loop).

When the decoder has to draw a character a constraint forbids (a forced character, or the other
rules left nothing it allows), the constraint records it in its state and :meth:`Constraint.notes`
turns that into sentences the returned poem carries: a rule the user asked for is never broken
silently.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .control import fits_at, keyword_windows, keywords_fit
from .tokenizer import CharTokenizer


@dataclass(frozen=True)
class PoemSpec:
    """The validated shape: form, line count, forced characters per slot, and the theme."""

    form: int
    lines: int
    forced: dict[int, str] = field(default_factory=dict)  # slot index → character
    title: str = ""  # read by a control model before the poem, never printed
    keywords: tuple[str, ...] = ()  # each stands whole in the poem (see Keywords)
    kept: frozenset[int] = frozenset()  # 0-based lines kept whole from an earlier poem

    @property
    def slots(self) -> int:
        return self.form * self.lines

    def kept_lines(self) -> list[str]:
        """The text of each kept line (a keyword standing whole in one needs no other place)."""
        return ["".join(self.forced[i * self.form + c] for c in range(self.form)) for i in sorted(self.kept)]

    def open_keywords(self) -> list[int]:
        """Indices of the keywords that no kept line holds already: the ones the decoder places."""
        kept = self.kept_lines()
        return [i for i, word in enumerate(self.keywords) if not any(word in line for line in kept)]

    def position(self, slot: int) -> tuple[int, int]:
        """(line, column), both 0-based."""
        return divmod(slot, self.form)

    def where(self, slot: int) -> str:
        """A slot as users count: ``line 2, character 5`` (with ``kept`` for a kept line)."""
        line, col = self.position(slot)
        kept = "kept " if line in self.kept else ""
        return f"{kept}line {line + 1}, character {col + 1}"


class Constraint:
    """Masks what may stand in a slot; the state it needs per poem lives in the decoder's walk.

    ``name`` names the rule in notes ("strict tone", "rhyme", "no repeat").
    """

    name = "constraint"

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> Any:
        """The per-poem state for one batch of ``batch_size`` poems (None when the rule needs none)."""
        return None

    def allowed(self, slot: int, spec: PoemSpec, state: Any) -> torch.Tensor | None:
        """A (batch, vocab) or (vocab,) bool mask of allowed ids, or None for no restriction."""
        return None

    def reweigh(self, slot: int, spec: PoemSpec, state: Any, logits: torch.Tensor) -> torch.Tensor:
        """The (batch, vocab) logits to draw from (called after :meth:`allowed`); most rules leave
        them alone. Never changes the poem's score, which is the model's own probability."""
        return logits

    def observe(self, slot: int, spec: PoemSpec, state: Any, chosen: torch.Tensor) -> None:
        """Update ``state`` with the (batch,) ids drawn for ``slot``; record any broken rule there."""

    def notes(self, state: Any, poem: int) -> list[str]:
        """Sentences saying where poem ``poem`` had to break this rule (empty when it never did)."""
        return []


class Broken:
    """Where each poem of a batch broke a rule: per poem, (slot, character, why) in order."""

    def __init__(self, spec: PoemSpec, batch_size: int) -> None:
        self.spec = spec
        self.events: list[list[tuple[int, str, str]]] = [[] for _ in range(batch_size)]

    def add(self, poem: int, slot: int, char: str, why: str) -> None:
        self.events[poem].append((slot, char, why))

    def sentences(self, rule: str, poem: int) -> list[str]:
        """One sentence per break: ``The strict tone rule is broken at line 1, character 1 (明): …``."""
        out = []
        for slot, char, why in self.events[poem]:
            given = ", a character you gave" if slot in self.spec.forced else ""
            out.append(f"The {rule} rule is broken at {self.spec.where(slot)} ({char}{given}): {why}.")
        return out


class HanOnly(Constraint):
    """A character slot holds a Han character: never punctuation, a special token or Latin."""

    name = "Han character"

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> torch.Tensor:
        mask = torch.zeros(len(tokenizer), dtype=torch.bool)
        mask[tokenizer.han_ids()] = True
        return mask

    def allowed(self, slot: int, spec: PoemSpec, state: torch.Tensor) -> torch.Tensor:
        return state


class Forced(Constraint):
    """The user's first characters, acrostic heads or kept lines, at their slots."""

    name = "forced character"

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> tuple[dict[int, int], int]:
        return {slot: tokenizer.index[ch] for slot, ch in spec.forced.items()}, len(tokenizer)

    def allowed(self, slot: int, spec: PoemSpec, state: tuple[dict[int, int], int]) -> torch.Tensor | None:
        ids, vocab = state
        if slot not in ids:
            return None
        mask = torch.zeros(vocab, dtype=torch.bool)
        mask[ids[slot]] = True
        return mask


@dataclass
class KeywordState:
    tokenizer: CharTokenizer
    words: tuple[str, ...]
    pending: list[set[int]]  # per poem: indices of the words not yet placed
    active: list[tuple[int, int] | None]  # per poem: (word, next character) while a word is being written
    starts: list[list[int]]  # per poem: words that may start at the current slot (set by allowed)
    free: list[bool]  # per poem: whether the current slot may hold any character
    seen: list[dict[int, list[float]]]  # per poem and word: [sum, count] of its first character's probability
    fits: dict[tuple[frozenset[int], int], bool]  # (pending words, from slot) → whether they still fit


class Keywords(Constraint):
    """Each of the request's keywords stands in the poem whole, inside one line, where the model's
    likelihood puts it: at every slot a poem may start a pending word if the rest of the line holds
    it and the remaining slots still hold the other pending words; once started, it is finished.
    A slot must start a word only when otherwise the pending words could no longer fit.
    """

    name = "keyword"

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> KeywordState:
        words = spec.keywords
        return KeywordState(
            tokenizer,
            words,
            [set(spec.open_keywords()) for _ in range(batch_size)],
            [None] * batch_size,
            [[] for _ in range(batch_size)],
            [True] * batch_size,
            [{} for _ in range(batch_size)],
            {},
        )

    def _fit(self, spec: PoemSpec, state: KeywordState, pending: set[int], start: int) -> bool:
        key = (frozenset(pending), start)
        if key not in state.fits:
            words = [state.words[i] for i in pending]
            state.fits[key] = keywords_fit(words, spec.slots, spec.form, spec.forced, start)
        return state.fits[key]

    def allowed(self, slot: int, spec: PoemSpec, state: KeywordState) -> torch.Tensor | None:
        index, vocab = state.tokenizer.index, len(state.tokenizer)
        mask: torch.Tensor | None = None
        for b, pending in enumerate(state.pending):
            if state.active[b] is not None:
                word, at = state.active[b]
                state.starts[b], state.free[b] = [], False
                chars = [index[state.words[word][at]]]
            elif not pending:
                state.starts[b], state.free[b] = [], True
                continue
            else:
                state.starts[b] = [
                    w
                    for w in sorted(pending)
                    if fits_at(state.words[w], slot, spec.slots, spec.form, spec.forced)
                    and self._fit(spec, state, pending - {w}, slot + len(state.words[w]))
                ]
                state.free[b] = self._fit(spec, state, pending, slot + 1)
                if state.free[b] or not state.starts[b]:  # free, or nothing fits any more: no restriction
                    continue
                chars = [index[state.words[w][0]] for w in state.starts[b]]
            if mask is None:
                mask = torch.ones(len(state.pending), vocab, dtype=torch.bool)
            mask[b] = False
            mask[b, chars] = True
        return mask

    def reweigh(self, slot: int, spec: PoemSpec, state: KeywordState, logits: torch.Tensor) -> torch.Tensor:
        """Where a poem may start a word or write anything, give the word's first character the
        probability max(p, p / (p + (n - 1) · p̄)): p is the model's probability for it here, p̄ its
        mean over this and the earlier slots, n the slots left where the word can start. A start
        lands where the model likes the word, or likes it more than at the slots before, and is not
        left to the last slot that still fits (where a model that rarely draws the exact character
        would otherwise put it, breaking the rhyme there).
        """
        rows = [b for b in range(len(state.pending)) if state.free[b] and state.starts[b]]
        if not rows:
            return logits
        out = logits.double().clone()
        logp = torch.log_softmax(out[rows], dim=-1)
        for k, b in enumerate(rows):
            for w in state.starts[b]:
                word, first = state.words[w], state.tokenizer.index[state.words[w][0]]
                p = min(float(logp[k, first].exp()), 1 - 1e-12)
                seen = state.seen[b].setdefault(w, [0.0, 0])
                seen[0], seen[1] = seen[0] + p, seen[1] + 1
                left = len(keyword_windows(word, spec.slots, spec.form, spec.forced, slot))
                h = min(max(p, p / max(p + (left - 1) * seen[0] / seen[1], 1e-300)), 1 - 1e-9)
                logp[k] += math.log((1 - h) / (1 - p))
                logp[k, first] = math.log(max(h, 1e-300))
            out[b] = logp[k]
        return out

    def observe(self, slot: int, spec: PoemSpec, state: KeywordState, chosen: torch.Tensor) -> None:
        for b, i in enumerate(chosen.tolist()):
            ch = state.tokenizer.tokens[i]
            if state.active[b] is not None:
                word, at = state.active[b]
                if ch != state.words[word][at]:  # another rule won (a forced slot): the word starts over
                    state.pending[b].add(word)
                    state.active[b] = None
                else:
                    state.active[b] = (word, at + 1) if at + 1 < len(state.words[word]) else None
                continue
            started = [w for w in state.starts[b] if state.words[w][0] == ch]
            if started:
                word = started[0]
                state.pending[b].discard(word)
                state.active[b] = (word, 1) if len(state.words[word]) > 1 else None

    def notes(self, state: KeywordState, poem: int) -> list[str]:
        missing = sorted(state.pending[poem]) + ([state.active[poem][0]] if state.active[poem] else [])
        return [f"The keyword {state.words[w]} could not be placed whole in the poem." for w in missing]


@dataclass
class RepeatState:
    tokenizer: CharTokenizer
    counts: torch.Tensor  # (batch, V) how often each id stands in the poem, forced slots counted from the start
    last: torch.Tensor  # (batch,) the id drawn at the previous slot
    broken: Broken


class NoRepeat(Constraint):
    """A character stands once in the poem, as 近体诗 wants, except as a reduplicated pair (叠字,
    声声: the character right after itself, inside one line, when that is its only other use).

    The characters the user forced (first characters, acrostic heads, kept lines) always stand
    where they were put, repeated or not; a drawn character repeats none of them.
    """

    name = "no repeat"

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> RepeatState:
        counts = torch.zeros(batch_size, len(tokenizer), dtype=torch.long)
        for ch in spec.forced.values():
            counts[:, tokenizer.index[ch]] += 1
        last = torch.full((batch_size,), -1, dtype=torch.long)
        return RepeatState(tokenizer, counts, last, Broken(spec, batch_size))

    def _may_double(self, slot: int, spec: PoemSpec, state: RepeatState) -> torch.Tensor:
        """(batch,) whether each poem may repeat its previous character here: not at a line start,
        and only a character that stands once so far."""
        if not slot % spec.form:
            return torch.zeros(len(state.last), dtype=torch.bool)
        return state.counts[torch.arange(len(state.last)), state.last] == 1

    def _allowed(self, slot: int, spec: PoemSpec, state: RepeatState) -> torch.Tensor:
        mask = state.counts == 0
        double = self._may_double(slot, spec, state)
        mask[torch.arange(len(mask))[double], state.last[double]] = True
        return mask

    def allowed(self, slot: int, spec: PoemSpec, state: RepeatState) -> torch.Tensor | None:
        return None if slot in spec.forced else self._allowed(slot, spec, state)

    def observe(self, slot: int, spec: PoemSpec, state: RepeatState, chosen: torch.Tensor) -> None:
        if slot not in spec.forced:
            rows = torch.arange(len(chosen))
            # _allowed's verdict on the chosen ids alone, without a (batch, vocab) mask
            ok = (state.counts[rows, chosen] == 0) | ((chosen == state.last) & self._may_double(slot, spec, state))
            for b in (~ok).nonzero().flatten().tolist():
                state.broken.add(b, slot, state.tokenizer.tokens[int(chosen[b])], "it already stands in the poem")
            state.counts[rows, chosen] += 1
        state.last = chosen.clone()

    def notes(self, state: RepeatState, poem: int) -> list[str]:
        return state.broken.sentences(self.name, poem)


def stray_repeats(lines: Sequence[str], forced: Collection[int] = ()) -> list[str]:
    """Characters that stand more than once with a use at a slot not in ``forced`` (slot indices),
    other than a 叠字 pair: what :class:`NoRepeat` keeps out (for tests, scores and judging)."""
    text = "".join(lines)
    form = len(lines[0]) if lines else 1
    slots: dict[str, list[int]] = {}
    for i, ch in enumerate(text):
        slots.setdefault(ch, []).append(i)
    stray = []
    for ch, where in slots.items():
        free = [i for i in where if i not in forced]
        pair = len(where) == 2 and where[1] == where[0] + 1 and where[1] % form
        if len(where) > 1 and free and not pair:
            stray.append(ch)
    return sorted(stray)
