"""The decoding constraints' interface and the request's slot layout.

A :class:`Constraint` is a small rule behind one interface, like transformers' LogitsProcessors:
it says which ids may stand in a slot and watches what was drawn. It holds only its settings.
The rules of regulated verse and keywords live in :mod:`tangpoem_hf.verse`. The
per-poem state it needs (patterns still possible, rhyme characters used, …) is created by
:meth:`Constraint.start` and kept by the decoder's walk, so one constraint object can serve any
number of requests at once (the server decodes many requests in one loop).

When the decoder has to draw a character a constraint forbids (a forced character, or the other
rules left nothing it allows), the constraint records it in its state and :meth:`Constraint.notes`
turns that into sentences the returned poem carries: a rule the user asked for is never broken
silently.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .attested import doublings, glued
from .control import WORD_STARTS
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
        """The (batch, vocab) logits to draw from; most rules leave them alone. Never changes the
        poem's score, which is the model's own probability."""
        return logits

    def observe(
        self, slot: int, spec: PoemSpec, state: Any, chosen: torch.Tensor, logits: torch.Tensor | None = None
    ) -> None:
        """Update ``state`` with the (batch,) ids drawn for ``slot`` from the model's (batch, vocab)
        ``logits`` (None where a character was fed, not drawn); record any broken rule there. The
        only method that changes ``state``: the others read it, so their order never matters."""

    def select(self, state: Any, rows: torch.Tensor) -> Any:
        """A new state for the poems ``rows`` (indices into the batch, in order, repeats allowed),
        like transformers' ``_reorder_cache``: a line search keeps the best partial poems and lets
        each go on in several rows. Per-poem parts are copied, never shared, so drawing in one row
        leaves every other row (and ``state``) alone; what all poems share may be shared. A rule
        without it cannot be used with a line search."""
        raise NotImplementedError(f"The rule {self.name!r} cannot select rows of its state.")

    def notes(self, state: Any, poem: int) -> list[str]:
        """Sentences saying where poem ``poem`` had to break this rule (empty when it never did)."""
        return []


def selects_rows(constraint: Constraint) -> bool:
    """Whether ``constraint`` implements :meth:`Constraint.select` (a line search needs it)."""
    return type(constraint).select is not Constraint.select


class Broken:
    """Where each poem of a batch broke a rule: per poem, (slot, character, why) in order."""

    def __init__(self, spec: PoemSpec, batch_size: int) -> None:
        self.spec = spec
        self.events: list[list[tuple[int, str, str]]] = [[] for _ in range(batch_size)]

    def select(self, rows: torch.Tensor) -> Broken:
        """The breaks of the poems ``rows``, copied (see :meth:`Constraint.select`)."""
        out = Broken(self.spec, 0)
        out.events = [list(self.events[r]) for r in rows.tolist()]
        return out

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

    def select(self, state: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return state  # one mask for every poem, never changed


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

    def select(self, state: tuple[dict[int, int], int], rows: torch.Tensor) -> tuple[dict[int, int], int]:
        return state  # the request's forced characters, the same for every poem


def doubling_allowed(line: str, column: int) -> bool:
    """Whether ``line[column]`` may stand again right after itself as a 叠字 whose pair starts at
    ``column``: a doubling the corpus attests (萋萋, never 乡乡), where a word starts (依依 opens a
    word; 故乡乡 is a word and a stray repeat), and not glued to the character before it, a word the
    corpus never doubles it after (归去去 reads as 归去 and a repeat; a character that closes a
    doubling of its own binds to its partner: 三三两两). 98% of the corpus's doublings of attested
    characters start where a word starts."""
    ch, before = line[column], line[column - 1 : column]
    if column >= 2 and line[column - 2] == before:
        before = ""
    return (
        ch in doublings()
        and column in WORD_STARTS.get(len(line), range(len(line)))
        and not (before and before in glued().get(ch, ""))
    )


@dataclass
class RepeatState:
    tokenizer: CharTokenizer
    counts: torch.Tensor  # (batch, V) how often each id stands in the poem, forced slots counted from the start
    last: torch.Tensor  # (batch,) the id drawn at the previous slot
    before: torch.Tensor  # (batch,) the id drawn two slots back, -1 where it closed a doubling
    broken: Broken
    doubles: torch.Tensor  # (V,) bool: characters whose doubling the corpus attests
    glued: torch.Tensor  # sorted codes before * V + id of the pairs after which no doubling stands (归去)


class NoRepeat(Constraint):
    """A character stands once in the poem, as 近体诗 wants, except as a reduplicated pair (叠字,
    声声: the character right after itself, inside one line, when that is its only other use) that
    the corpus attests there (:func:`doubling_allowed`).

    The characters the user forced (first characters, acrostic heads, kept lines) always stand
    where they were put, repeated or not; a drawn character repeats none of them. A keyword's
    characters were asked for too: each use in an open keyword lets its character stand once more
    (``first="月", keywords="明月"`` may hold 月 twice), so placing a keyword never breaks this rule.
    """

    name = "no repeat"

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> RepeatState:
        counts = torch.zeros(batch_size, len(tokenizer), dtype=torch.long)
        for ch in spec.forced.values():
            counts[:, tokenizer.index[ch]] += 1
        for i in spec.open_keywords():  # uses the user asked for: below zero until they are spent
            for ch in spec.keywords[i]:
                counts[:, tokenizer.index[ch]] -= 1
        last = torch.full((batch_size,), -1, dtype=torch.long)
        doubles = torch.zeros(len(tokenizer), dtype=torch.bool)
        doubles[[tokenizer.index[ch] for ch in doublings() if ch in tokenizer]] = True
        index, vocab = tokenizer.index, len(tokenizer)
        pairs = [
            index[b] * vocab + index[ch] for ch, bs in glued().items() if ch in tokenizer for b in bs if b in tokenizer
        ]
        codes = torch.tensor(sorted(pairs), dtype=torch.long)
        return RepeatState(tokenizer, counts, last, last.clone(), Broken(spec, batch_size), doubles, codes)

    def _may_double(self, slot: int, spec: PoemSpec, state: RepeatState) -> torch.Tensor:
        """(batch,) whether each poem may repeat its previous character here: not at a line start,
        a pair starting where a word may start, of a character the corpus doubles that stands once
        so far, and not glued into a word with the character before it (:func:`doubling_allowed`)."""
        col = slot % spec.form
        if not col or col - 1 not in WORD_STARTS.get(spec.form, range(spec.form)):
            return torch.zeros(len(state.last), dtype=torch.bool)
        rows = torch.arange(len(state.last))
        may = (state.counts[rows, state.last] == 1) & state.doubles[state.last]
        if col >= 2:  # the character before the pair stands in this line
            may &= ~torch.isin(state.before * len(state.doubles) + state.last, state.glued)
        return may

    def _allowed(self, slot: int, spec: PoemSpec, state: RepeatState) -> torch.Tensor:
        mask = state.counts <= 0
        double = self._may_double(slot, spec, state)
        mask[torch.arange(len(mask))[double], state.last[double]] = True
        return mask

    def allowed(self, slot: int, spec: PoemSpec, state: RepeatState) -> torch.Tensor | None:
        return None if slot in spec.forced else self._allowed(slot, spec, state)

    def observe(
        self, slot: int, spec: PoemSpec, state: RepeatState, chosen: torch.Tensor, logits: torch.Tensor | None = None
    ) -> None:
        if slot not in spec.forced:
            rows = torch.arange(len(chosen))
            # _allowed's verdict on the chosen ids alone, without a (batch, vocab) mask
            ok = (state.counts[rows, chosen] <= 0) | ((chosen == state.last) & self._may_double(slot, spec, state))
            for b in (~ok).nonzero().flatten().tolist():
                state.broken.add(b, slot, state.tokenizer.tokens[int(chosen[b])], "it already stands in the poem")
            state.counts[rows, chosen] += 1
        # a character that closes a doubling (三三两两) is bound to its partner, not to the next word
        state.before = torch.where(state.last == state.before, -1, state.last)
        state.last = chosen.clone()

    def select(self, state: RepeatState, rows: torch.Tensor) -> RepeatState:
        counts, last = state.counts[rows], state.last[rows]  # copies: observe adds to them in place
        broken = state.broken.select(rows)
        return RepeatState(state.tokenizer, counts, last, state.before[rows], broken, state.doubles, state.glued)

    def notes(self, state: RepeatState, poem: int) -> list[str]:
        return state.broken.sentences(self.name, poem)


SEASONS = "春夏秋冬"


def seasons_named(lines: Sequence[str]) -> str:
    """The seasons a poem names (of 春夏秋冬), each once, in the order they first stand."""
    return "".join(dict.fromkeys(ch for line in lines for ch in line if ch in SEASONS))


@dataclass
class SeasonState:
    vocab: int
    ids: torch.Tensor  # (4,) the ids of 春夏秋冬 (-1 for one the vocabulary lacks)
    named: torch.Tensor  # (batch, 4) bool: the seasons each poem names so far, the user's from the start
    tokens: Sequence[str]
    broken: Broken


class OneSeason(Constraint):
    """A poem names one season: once 春, 夏, 秋 or 冬 stands in it, the other three are refused.

    Judges fault poems that change season halfway (春风初入洞庭秋, "snow beside spring flowers"):
    the model, drawing left to right, names two seasons in about 5% of its quatrains; real
    quatrains do in 1%, and there mostly set them against each other on purpose (春种一粒粟，秋成
    万颗子), which a draw rarely does. The seasons the user gave (forced characters, keywords)
    always stand and refuse only the others.
    """

    name = "one season"

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> SeasonState:
        ids = torch.tensor([tokenizer.index.get(ch, -1) for ch in SEASONS], dtype=torch.long)
        given = "".join(spec.forced.values()) + "".join(spec.keywords)
        named = torch.tensor([ch in given for ch in SEASONS]).expand(batch_size, -1).clone()
        return SeasonState(len(tokenizer), ids, named, tokenizer.tokens, Broken(spec, batch_size))

    @staticmethod
    def _refused(state: SeasonState) -> torch.Tensor:
        """(batch, 4) the seasons each poem may no longer name: all but its own, once it has one."""
        return state.named.any(dim=1, keepdim=True) & ~state.named

    def allowed(self, slot: int, spec: PoemSpec, state: SeasonState) -> torch.Tensor | None:
        present = state.ids >= 0
        refused = self._refused(state) & present
        if slot in spec.forced or not bool(refused.any()):
            return None
        mask = torch.ones(len(refused), state.vocab, dtype=torch.bool)
        mask[:, state.ids[present]] = ~refused[:, present]
        return mask

    def observe(
        self, slot: int, spec: PoemSpec, state: SeasonState, chosen: torch.Tensor, logits: torch.Tensor | None = None
    ) -> None:
        hits = chosen.unsqueeze(1) == state.ids.unsqueeze(0)  # (batch, 4)
        if slot not in spec.forced:
            for b in (hits & self._refused(state)).any(dim=1).nonzero().flatten().tolist():
                own = "".join(ch for ch, on in zip(SEASONS, state.named[b].tolist()) if on)
                state.broken.add(b, slot, state.tokens[int(chosen[b])], f"the poem already names {own}")
        state.named |= hits

    def select(self, state: SeasonState, rows: torch.Tensor) -> SeasonState:
        return SeasonState(state.vocab, state.ids, state.named[rows], state.tokens, state.broken.select(rows))

    def notes(self, state: SeasonState, poem: int) -> list[str]:
        return state.broken.sentences(self.name, poem)


def stray_repeats(lines: Sequence[str], forced: Collection[int] = ()) -> list[str]:
    """Characters that stand more than once with a use at a slot not in ``forced`` (slot indices),
    other than a pair (叠字) inside one line: the repeats the candidates' score marks down. A poem
    under :class:`NoRepeat` has none, and no doubling the corpus does not attest either."""
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
