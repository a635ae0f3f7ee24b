"""Decoding constraints of regulated verse: keywords, rhyme and tone placed together.

A poem under these rules may still go several ways: one of the four tone patterns (平起/仄起 ×
line 1 rhymed or not) and one 平声 rhyme group. Each (pattern, group) pair is a *world*; every
poem keeps the set of worlds that still fit its characters (the forced ones first). A slot allows
what some live world allows, and every drawn character drops the worlds it breaks. So the first
characters choose the pattern, the first rhyme chooses the group, and the model's own choices
settle whatever they leave open.

Keywords are placed in the same worlds: a slot offers a keyword, or anything else, only where the
pending keywords still fit *in a world that also keeps the rhyme and the tone*, so no rule breaks
when a placement that keeps them all exists. And a bound first half (徘 of 徘徊, learnt from the
corpus, :func:`~tangpoem_hf.attested.bound_words`) is not drawn right before a slot whose rule
forbids its partner, so a forced rhyme never cuts a word in half (独徘裟).

Back-off: the decoder's ``_combine`` skips a constraint for a poem when it would leave no
candidate; where rhyme and tone together leave nothing, the tone is dropped first. Each break is
recorded in the walk's state and returned as a note with the poem. The state is changed only by
:meth:`VerseRules.observe`; ``allowed`` and ``reweigh`` read it.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field

import torch

from .attested import bound_words
from .constraints import Broken, Constraint, PoemSpec
from .errors import InputError
from .keywords import KeywordState, WindowCheck, fits_at, keywords_fit
from .options import check_switch
from .prosody import PING, TONE_MODES, ZE, RhymeTable, load_table, patterns, relaxed_columns
from .tokenizer import CharTokenizer

# _NEED_ZE_ONLY: an unrhymed line 1's end, where a character with a 平 reading too (间, 深) is heard
# as a missed rhyme; real quatrains end line 1 so in 2% (七绝) to 5% (五绝) of poems, the bundled
# model's default in 13% (docs/reports/judging.md).
_FREE, _NEED_PING, _NEED_ZE, _NEED_ZE_ONLY = 0, 1, 2, 3
_ROW = {_NEED_PING: 0, _NEED_ZE: 1, _FREE: 3, _NEED_ZE_ONLY: 4}  # code → row of _Masks.tone_rows
_WANTS = {_NEED_PING: "平", _NEED_ZE: "仄", _NEED_ZE_ONLY: "仄 only"}  # code → the tone a note names


@dataclass
class _Masks:
    can_ping: torch.Tensor  # (V,) has a 平 reading
    can_ze: torch.Tensor  # (V,) has a 仄 reading
    tone_rows: torch.Tensor  # (5, V): 平, 仄, either (classified), anything, 仄 only
    group: torch.Tensor  # (G, V) float, 平声 group membership by the readings poems rhyme
    group_of: torch.Tensor  # (V, G) bool
    group_size: torch.Tensor  # (G,) vocabulary characters per 平声 group
    group_ids: list[int]  # table index of each 平声 group
    bound: tuple[torch.Tensor, torch.Tensor]  # (K,) ids of bound first halves and of their partners


_CACHE: weakref.WeakKeyDictionary[CharTokenizer, _Masks] = weakref.WeakKeyDictionary()


def masks_for(tokenizer: CharTokenizer, table: RhymeTable | None = None) -> _Masks:
    """Vocabulary masks, computed once per tokenizer so constrained decoding stays cheap."""
    cached = _CACHE.get(tokenizer)
    if cached is not None:
        return cached
    table = table or load_table()
    vocab = len(tokenizer)
    han = torch.zeros(vocab, dtype=torch.bool)
    han[tokenizer.han_ids()] = True
    can_ping = torch.zeros(vocab, dtype=torch.bool)
    can_ze = torch.zeros(vocab, dtype=torch.bool)
    group_ids = [g.index for g in table.ping_groups]
    col = {g: j for j, g in enumerate(group_ids)}
    group_of = torch.zeros(vocab, len(group_ids), dtype=torch.bool)
    for i, tok in enumerate(tokenizer.tokens):
        if not han[i]:
            continue
        tones = table.tones(tok)
        can_ping[i], can_ze[i] = PING in tones, ZE in tones
        for g in table.ping_groups_of(tok):
            group_of[i, col[g]] = True
    anything = torch.ones(vocab, dtype=torch.bool)
    tone_rows = torch.stack([can_ping, can_ze, can_ping | can_ze, anything, can_ze & ~can_ping])
    pairs = [
        (tokenizer.index[a], tokenizer.index[b]) for a, b in bound_words().items() if a in tokenizer and b in tokenizer
    ]
    bound = torch.tensor([a for a, _ in pairs], dtype=torch.long), torch.tensor([b for _, b in pairs], dtype=torch.long)
    group = group_of.T.contiguous().float()
    masks = _Masks(can_ping, can_ze, tone_rows, group, group_of, group_of.sum(0), group_ids, bound)
    _CACHE[tokenizer] = masks
    return masks


def _tone_fits(codes: torch.Tensor, ping: torch.Tensor, ze: torch.Tensor) -> torch.Tensor:
    """Whether characters that can be read 平 (``ping``) or 仄 (``ze``) meet tone ``codes``."""
    fits = (codes == _FREE) | ((codes == _NEED_PING) & ping) | ((codes == _NEED_ZE) & ze)
    return fits | ((codes == _NEED_ZE_ONLY) & ze & ~ping)


def _unrhymed_first_end(req: torch.Tensor, first_rhymed: torch.Tensor, form: int) -> torch.Tensor:
    """``req`` with line 1's end in the patterns that leave it unrhymed needing a 仄-only character."""
    out = req.clone()
    end = out[~first_rhymed, form - 1]
    out[~first_rhymed, form - 1] = torch.where(end == _NEED_ZE, _NEED_ZE_ONLY, end)
    return out


def _requirements(spec: PoemSpec, mode: str) -> torch.Tensor:
    """(patterns, slots) codes: what each pattern needs at each slot under ``mode``."""
    pats = patterns(spec.form, spec.lines)
    loose = relaxed_columns(spec.form)
    req = torch.zeros(len(pats), spec.slots, dtype=torch.long)
    for p, pat in enumerate(pats):
        for line, (kind, want) in enumerate(zip(pat.kinds, pat.lines)):
            for c, tone in enumerate(want):
                keep = mode == "strict" or c in loose
                keep |= kind == "B" and c == spec.form - 5  # no 孤平
                keep |= kind == "D" and c == spec.form - 3  # no 三平尾
                if keep:
                    req[p, line * spec.form + c] = _NEED_PING if tone == PING else _NEED_ZE
    return req


@dataclass
class Worlds:
    """What the request's rules allow in each world; fixed for the request, shared by its poems."""

    tokenizer: CharTokenizer
    masks: _Masks
    req: torch.Tensor  # (P, slots) tone codes
    first_rhymed: torch.Tensor  # (P,) bool: the pattern rhymes line 1
    rhyme: bool
    groups: torch.Tensor  # (G, V) bool: the characters that rhyme in each world's group
    rhyme_slots: frozenset[int]  # even line ends (and line 1's end where a pattern rhymes it)
    first_slot: int  # line 1's last slot, or -1 when line 1 never rhymes
    reserved: dict[int, int]  # slot → id of a forced character at a rhyme slot
    keyword_ids: list[int] = field(default_factory=list)  # the ids of the keywords' characters
    fits: dict[tuple, bool] = field(default_factory=dict)  # memo of the pure keyword fit search
    options: dict[tuple, object] = field(default_factory=dict)  # memo of VerseRules._find_options
    verse_masks: dict[tuple, torch.Tensor] = field(default_factory=dict)  # memo of VerseRules._verse_rows
    _needs: list[list[bool]] | None = None

    def needs_rhyme(self, slot: int) -> torch.Tensor:
        """(P,) whether each pattern wants a rhyme at ``slot``."""
        if not self.rhyme or (slot not in self.rhyme_slots and slot != self.first_slot):
            return torch.zeros(len(self.req), dtype=torch.bool)
        return torch.ones(len(self.req), dtype=torch.bool) if slot in self.rhyme_slots else self.first_rhymed.clone()

    def tone_ok(self, slot: int, ids: torch.Tensor) -> torch.Tensor:
        """(P, n): whether each of ``ids`` fits each pattern's tone at ``slot``."""
        ping, ze = self.masks.can_ping[ids].unsqueeze(0), self.masks.can_ze[ids].unsqueeze(0)
        return _tone_fits(self.req[:, slot].unsqueeze(1), ping, ze)

    def free_rhymes(self, slot: int, used: torch.Tensor) -> torch.Tensor:
        """(B, V): what may still rhyme at ``slot``: unused, and not forced at another rhyme slot."""
        free = ~used
        others = [i for s, i in self.reserved.items() if s != slot]
        if others:
            free[:, others] = False
        return free

    def takes(
        self, slot: int, worlds: torch.Tensor, used: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, P, V or n): whether each pattern, in some group of ``worlds`` (B, P, G), takes each id
        (all of them, or ``ids``) at ``slot`` as its rhyme wants (the tone aside)."""
        need = self.needs_rhyme(slot)
        out = worlds.any(2, keepdim=True).expand(-1, -1, self.groups.shape[1] if ids is None else len(ids)).clone()
        if bool(need.any()):
            groups = self.groups.float() if ids is None else self.groups[:, ids].float()
            free = self.free_rhymes(slot, used) if ids is None else self.free_rhymes(slot, used)[:, ids]
            rhymes = ((worlds.float() @ groups) > 0) & free.unsqueeze(1)
            out[:, need] = rhymes[:, need]
        return out

    def allowed(self, slot: int, worlds: torch.Tensor, used: torch.Tensor, tone: bool = True) -> torch.Tensor:
        """(B, V): what some world of ``worlds`` (B, P, G) allows at ``slot`` (without tone: rhyme only)."""
        takes = self.takes(slot, worlds, used)
        if tone:
            takes &= self.masks.tone_rows[[_ROW[int(c)] for c in self.req[:, slot]]].unsqueeze(0)
        return takes.any(1)

    def window_check(self, pattern: int, group: int, used: torch.Tensor, forced: dict[int, str]) -> WindowCheck:
        """Whether a keyword window keeps world (``pattern``, ``group``) for a poem with rhymes ``used`` (V,).
        Plain Python on the keyword characters alone: it runs for every window the search tries."""
        index, req = self.tokenizer.index, self.req[pattern].tolist()
        need = self.needs_rhyme_rows()[pattern]
        ids = self.keyword_ids
        fits = dict(zip(ids, self.masks.tone_rows[:, ids].T.tolist()))  # id → whether it fits each _ROW
        rhymes = (
            {i for i, ok in zip(ids, (self.groups[group, ids] & ~used[ids]).tolist()) if ok} if self.rhyme else set()
        )
        elsewhere = {i: s for s, i in self.reserved.items()}

        def ok(word: str, start: int, first: int) -> bool:
            for j in range(first, len(word)):
                slot, i = start + j, index[word[j]]
                if slot in forced:  # stands there anyway: a misfit is the forced character's own break
                    continue
                if not fits[i][_ROW[req[slot]]]:
                    return False
                if need[slot] and (i not in rhymes or elsewhere.get(i, slot) != slot):
                    return False
            return True

        return ok

    def needs_rhyme_rows(self) -> list[list[bool]]:
        """Per pattern and slot, whether the pattern wants a rhyme there (computed once)."""
        if self._needs is None:
            slots = range(self.req.shape[1])
            self._needs = [[bool(self.needs_rhyme(s)[p]) for s in slots] for p in range(len(self.req))]
        return self._needs

    def classes(self, alive: torch.Tensor, used: torch.Tensor, chars: list[int]) -> dict[tuple, list[tuple[int, int]]]:
        """The live worlds (P, G) of one poem by what keyword placement can tell apart: the pattern,
        and which of the keyword characters ``chars`` may rhyme in the group."""
        rhymeable = (self.groups[:, chars] & ~used[chars]) if self.rhyme and chars else None
        out: dict[tuple, list[tuple[int, int]]] = {}
        for p, g in alive.nonzero().tolist():
            key = (p, tuple(rhymeable[g].tolist()) if rhymeable is not None else ())
            out.setdefault(key, []).append((p, g))
        return out


@dataclass
class VerseState:
    worlds: Worlds
    alive: torch.Tensor  # (B, P, G) bool: the worlds each poem may still follow
    used: torch.Tensor  # (B, V) bool: rhymes used (and line 1's end)
    rhyme_broken: Broken
    tone_broken: Broken
    keywords: KeywordState | None


@dataclass
class _Options:
    """For one poem at one slot: the worlds a drawn character must keep, the words it may start
    there, whether it may also be anything else, and a character a word being written needs."""

    worlds: torch.Tensor  # (P, G) bool
    starts: list[int]
    free: bool
    next_char: str | None = None
    placed: bool = True  # False where no world keeps every rule and the words go by the slots alone


class VerseRules(Constraint):
    """Keywords, rhyme and tone as one constraint, placed together (see the module doc).

    ``rhyme``: even lines end in one 平声 group (``group``: the user's), never with the same
    character twice; line 1 ends in the group or in a 仄 character, as the patterns allow, and then
    in one without a 平 reading (not 间 or 深, which a reader hears as a missed rhyme).
    ``tone``: "strict" checks every position, "relaxed" the even positions and the line end, and
    also keeps 孤平 and 三平尾 out. ``keywords``: each of the request's keywords stands whole in one
    line, where the model's likelihood puts it (see :meth:`reweigh`).
    """

    def __init__(self, rhyme: bool = False, tone: str | None = None, group: str | None = None, keywords: bool = False):
        self.rhyme, self.tone, self.group_name, self.keywords = rhyme or group is not None, tone, group, keywords
        self.name = "regulated verse" if self.rhyme or tone else "keyword"

    # --- start -----------------------------------------------------------------------------------

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> VerseState:
        m = masks_for(tokenizer)
        rhymed = self.rhyme and spec.lines >= 2
        if self.tone is not None:
            req = _requirements(spec, self.tone)
            first_rhymed = torch.tensor([p.first_rhymed for p in patterns(spec.form, spec.lines)])
        elif rhymed:  # line 1 rhymes, or ends in a 仄 character
            req = torch.zeros(2, spec.slots, dtype=torch.long)
            req[1, spec.form - 1] = _NEED_ZE
            first_rhymed = torch.tensor([True, False])
        else:
            req, first_rhymed = torch.zeros(1, spec.slots, dtype=torch.long), torch.tensor([False])
        if rhymed:
            req = _unrhymed_first_end(req, first_rhymed, spec.form)
        rhyme_slots = frozenset(line * spec.form + spec.form - 1 for line in range(1, spec.lines, 2))
        groups, viable, reserved = self._groups(spec, tokenizer, m, rhyme_slots)
        keyword_ids = sorted({tokenizer.index[ch] for word in spec.keywords for ch in word})
        worlds = Worlds(tokenizer, m, req, first_rhymed, self.rhyme, groups, rhyme_slots,
                        spec.form - 1 if rhymed else -1, reserved, keyword_ids)  # fmt: skip
        alive = self._patterns(spec, worlds).unsqueeze(1) & viable.unsqueeze(0)
        keywords = KeywordState.start(spec.keywords, spec.open_keywords(), batch_size) if self.keywords else None
        return VerseState(
            worlds,
            alive.unsqueeze(0).repeat(batch_size, 1, 1),
            torch.zeros(batch_size, len(tokenizer), dtype=torch.bool),
            Broken(spec, batch_size),
            Broken(spec, batch_size),
            keywords,
        )

    def _groups(self, spec: PoemSpec, tokenizer: CharTokenizer, m: _Masks, rhyme_slots: frozenset[int]):
        """The worlds' groups (G, V), those still viable (G,), and forced characters at rhyme slots.
        A group is chosen only among those with enough characters in the vocabulary, so the rhyme
        mask never runs dry."""
        if not self.rhyme:
            return torch.ones(1, len(tokenizer), dtype=torch.bool), torch.ones(1, dtype=torch.bool), {}
        viable = m.group_size >= len(rhyme_slots) + 1
        if self.group_name is not None:
            g = load_table().find_group(self.group_name)
            j = m.group_ids.index(g.index)
            if int(m.group_size[j]) < len(rhyme_slots):
                raise InputError(
                    f"The model knows only {int(m.group_size[j])} characters of {g.name}; "
                    f"a poem of {spec.lines} lines needs {len(rhyme_slots)}."
                )
            viable = torch.zeros_like(viable)
            viable[j] = True
        # Forced characters at rhyme slots (a kept line, say) narrow the group from the start and
        # are kept for their own slot, so no earlier line takes them.
        reserved = {}
        for slot, ch in spec.forced.items():
            i = tokenizer.index[ch]
            if slot in rhyme_slots:
                reserved[slot] = i
                if bool((viable & m.group_of[i]).any()):
                    viable = viable & m.group_of[i]
        return m.group_of.T.clone(), viable, reserved

    def _patterns(self, spec: PoemSpec, worlds: Worlds) -> torch.Tensor:
        """(P,) the patterns that fit every forced character; if none does, those that break the
        relaxed rule least and then this mode's: so forced characters that rule out every strict
        pattern still get a poem that keeps the relaxed rule where it can (the break is noted)."""
        if self.tone is None:
            return torch.ones(len(worlds.req), dtype=torch.bool)
        loose = _requirements(spec, "relaxed")
        misfit = torch.zeros(len(worlds.req), dtype=torch.long)
        for slot, ch in spec.forced.items():
            i = torch.tensor([worlds.tokenizer.index[ch]])
            ping, ze = worlds.masks.can_ping[i].unsqueeze(0), worlds.masks.can_ze[i].unsqueeze(0)
            fits_loose = _tone_fits(loose[:, slot].unsqueeze(1), ping, ze)
            misfit += (~fits_loose[:, 0]).long() * (spec.slots + 1) + (~worlds.tone_ok(slot, i)[:, 0]).long()
        return misfit == misfit.min()

    # --- keywords in the worlds ------------------------------------------------------------------

    def _fit(self, spec: PoemSpec, state: VerseState, words: frozenset[int], start: int, cls: tuple, ok) -> bool:
        """Whether ``words`` still fit from ``start`` in the worlds of class ``cls`` (memoised)."""
        kws = state.keywords
        assert kws is not None
        key = (words, start, cls)
        if key not in state.worlds.fits:
            text = [kws.words[i] for i in words]
            state.worlds.fits[key] = keywords_fit(text, spec.slots, spec.form, spec.forced, start, ok)
        return state.worlds.fits[key]

    def _classes(self, spec: PoemSpec, state: VerseState, poem: int) -> list[tuple[tuple, list, WindowCheck]]:
        """The poem's live worlds by class, each with a window check of its own."""
        w, kws = state.worlds, state.keywords
        assert kws is not None
        out = []
        for cls, members in w.classes(state.alive[poem], state.used[poem], w.keyword_ids).items():
            p, g = members[0]
            out.append((cls, members, w.window_check(p, g, state.used[poem], spec.forced)))
        return out

    def _options(self, slot: int, spec: PoemSpec, state: VerseState, poem: int) -> _Options:
        """What poem ``poem`` may do at ``slot`` under the keywords: a pure function of its state,
        memoised on it (allowed, reweigh and observe all ask)."""
        alive, kws = state.alive[poem], state.keywords
        if kws is None or (not kws.pending[poem] and kws.active[poem] is None):
            return _Options(alive, [], True)
        used = state.used[poem, state.worlds.keyword_ids] if state.worlds.rhyme else None
        key = (slot, frozenset(kws.pending[poem]), kws.active[poem], alive.numpy().tobytes(),
               None if used is None else used.numpy().tobytes())  # fmt: skip
        if key not in state.worlds.options:
            state.worlds.options[key] = self._find_options(slot, spec, state, poem)
        return state.worlds.options[key]

    def _find_options(self, slot: int, spec: PoemSpec, state: VerseState, poem: int) -> _Options:
        alive, kws = state.alive[poem], state.keywords
        assert kws is not None
        pending = frozenset(kws.pending[poem])
        classes = self._classes(spec, state, poem)
        keep = torch.zeros_like(alive)
        if kws.active[poem] is not None:
            word, at = kws.active[poem]
            text, begin = kws.words[word], slot - at
            for cls, members, ok in classes:
                if ok(text, begin, at) and self._fit(spec, state, pending, begin + len(text), cls, ok):
                    keep[tuple(zip(*members))] = True
            return _Options(keep if bool(keep.any()) else alive, [], False, text[at])
        starts: set[int] = set()
        for cls, members, ok in classes:
            if self._fit(spec, state, pending, slot + 1, cls, ok):
                keep[tuple(zip(*members))] = True
            for i in pending - starts:
                text = kws.words[i]
                fits = fits_at(text, slot, spec.slots, spec.form, spec.forced, ok)
                if fits and self._fit(spec, state, pending - {i}, slot + len(text), cls, ok):
                    starts.add(i)
        if bool(keep.any()) or starts:
            return _Options(keep, sorted(starts), bool(keep.any()))
        # No world keeps every rule any more: the words go where the slots alone let them, and the
        # other rules give way to them (their breaks are noted).
        geometric = [
            i
            for i in sorted(pending)
            if fits_at(kws.words[i], slot, spec.slots, spec.form, spec.forced)
            and keywords_fit(
                [kws.words[j] for j in sorted(pending - {i})],
                spec.slots,
                spec.form,
                spec.forced,
                slot + len(kws.words[i]),
            )  # fmt: skip
        ]
        free = keywords_fit([kws.words[i] for i in sorted(pending)], spec.slots, spec.form, spec.forced, slot + 1)
        return _Options(alive, geometric, free or not geometric, placed=False)

    # --- the constraint interface ----------------------------------------------------------------

    def allowed(self, slot: int, spec: PoemSpec, state: VerseState) -> torch.Tensor:
        options = [self._options(slot, spec, state, b) for b in range(len(state.alive))]
        mask = self._verse_mask(slot, spec, state, torch.stack([o.worlds for o in options]))
        if state.keywords is None:
            return mask
        index, words = state.worlds.tokenizer.index, state.keywords.words
        for b, o in enumerate(options):
            starts = [index[words[i][0]] for i in o.starts]
            if o.next_char is not None:
                starts = [index[o.next_char]]
            elif o.free:
                if o.placed:  # a word may start here in a world of its own
                    mask[b, starts] = True
                continue
            row = torch.zeros(mask.shape[1], dtype=torch.bool)
            row[starts] = True
            both = row & mask[b]
            mask[b] = both if bool(both.any()) else row  # the keyword wins; the other rules note their break
        return mask

    def _verse_mask(self, slot: int, spec: PoemSpec, state: VerseState, worlds: torch.Tensor) -> torch.Tensor:
        """(B, V): what ``worlds`` allow (see :meth:`_verse_rows`). A row depends only on the slot, the
        poem's worlds and its rhymes used, which the rows of a line search and the slots of one poem
        share often: each distinct row is computed once per request."""
        w = state.worlds
        if not (self.rhyme or self.tone):  # keywords alone: any character, in a poem with a live world
            return worlds.flatten(1).any(1, keepdim=True).expand(-1, len(w.tokenizer)).clone()
        used: list[list[int]] = [[] for _ in range(len(worlds))]
        for b, i in state.used.nonzero().tolist():
            used[b].append(i)
        keys = [(slot, worlds[b].numpy().tobytes(), tuple(used[b])) for b in range(len(worlds))]
        todo = list({k: b for b, k in enumerate(keys) if k not in w.verse_masks}.items())
        if todo:
            rows = torch.tensor([b for _, b in todo])
            for (key, _), row in zip(todo, self._verse_rows(slot, spec, w, worlds[rows], state.used[rows])):
                w.verse_masks[key] = row
        return torch.stack([w.verse_masks[k] for k in keys])

    def _verse_rows(
        self, slot: int, spec: PoemSpec, w: Worlds, worlds: torch.Tensor, used: torch.Tensor
    ) -> torch.Tensor:
        """(B, V): what ``worlds`` (B, P, G) allow with the rhymes ``used`` (B, V), the tone dropped
        where rhyme and tone leave nothing, and bound first halves kept out where no world takes
        their partner next."""
        mask = w.allowed(slot, worlds, used)
        empty = ~mask.any(1)
        if bool(empty.any()):
            mask[empty] = w.allowed(slot, worlds[empty], used[empty], tone=False)
        first, partner = w.masks.bound
        if not len(first) or slot % spec.form + 1 >= spec.form or slot in spec.forced:
            return mask
        pair = w.tone_ok(slot, first) & w.tone_ok(slot + 1, partner)  # (P, K)
        whole = (w.takes(slot + 1, worlds, used, partner) & pair.unsqueeze(0)).any(1)  # (B, K)
        trimmed = mask.clone()
        trimmed[:, first] &= whole
        return torch.where(trimmed.any(1, keepdim=True), trimmed, mask)

    def reweigh(self, slot: int, spec: PoemSpec, state: VerseState, logits: torch.Tensor) -> torch.Tensor:
        """Where a poem may start a keyword or write anything, give the word's first character the
        probability max(p, p / (p + (n - 1) · p̄)): p is the model's probability for it here, p̄ its
        mean over this and the earlier slots, n the slots left where the word can start. A start
        lands where the model likes the word, or likes it more than at the slots before, and is not
        left to the last slot that still fits (where a model that rarely draws the exact character
        would otherwise put it, breaking the rhyme there).
        """
        chances = self._chances(slot, spec, state, logits) if state.keywords is not None else {}
        if not chances:
            return logits
        out = logits.double().clone()
        for b, (logp, _) in chances.items():
            out[b] = logp
        return out

    def _chances(self, slot: int, spec: PoemSpec, state: VerseState, logits: torch.Tensor) -> dict:
        """Per poem that may start a word or write anything: its reweighed log-probabilities and,
        per word that may start, (word, p) with p its probability when its turn came."""
        kws = state.keywords
        assert kws is not None
        options = {b: self._options(slot, spec, state, b) for b in range(len(state.alive))}
        rows = [b for b, o in options.items() if o.free and o.starts]
        if not rows:
            return {}
        logp = torch.log_softmax(logits.double()[rows], dim=-1)
        later = range(slot, spec.slots)
        out = {}
        for k, b in enumerate(rows):
            seen = []
            for i in options[b].starts:
                word, first = kws.words[i], state.worlds.tokenizer.index[kws.words[i][0]]
                p = min(float(logp[k, first].exp()), 1 - 1e-12)
                total, count = kws.seen[b].get(i, (0.0, 0))
                if options[b].placed:  # the slots where some live world takes the word
                    checks = [ok for _, _, ok in self._classes(spec, state, b)]
                    fits = [
                        any(fits_at(word, s, spec.slots, spec.form, spec.forced, ok) for ok in checks) for s in later
                    ]
                else:
                    fits = [fits_at(word, s, spec.slots, spec.form, spec.forced) for s in later]
                mean = (total + p) / (count + 1)
                h = min(max(p, p / max(p + (sum(fits) - 1) * mean, 1e-300)), 1 - 1e-9)
                logp[k] += math.log((1 - h) / (1 - p))
                logp[k, first] = math.log(max(h, 1e-300))
                seen.append((i, p))
            out[b] = (logp[k], seen)
        return out

    def observe(
        self, slot: int, spec: PoemSpec, state: VerseState, chosen: torch.Tensor, logits: torch.Tensor | None = None
    ) -> None:
        kws, w = state.keywords, state.worlds
        if kws is not None:
            chances = self._chances(slot, spec, state, logits) if logits is not None else {}
            starts = [self._options(slot, spec, state, b).starts for b in range(len(chosen))]
            for b, (_, drawn) in chances.items():
                for i, p in drawn:
                    total, count = kws.seen[b].get(i, (0.0, 0))
                    kws.seen[b][i] = [total + p, count + 1]
            for b, i in enumerate(chosen.tolist()):
                kws.advance(b, w.tokenizer.tokens[i], starts[b])
        if not (self.rhyme or self.tone):
            return
        self._note(slot, state, chosen)
        rows = torch.arange(len(chosen))
        tone_fit = w.tone_ok(slot, chosen).T.unsqueeze(2)  # (B, P, 1)
        rhyme_fit = torch.ones(len(chosen), 1, 1, dtype=torch.bool)
        need = w.needs_rhyme(slot)
        if bool(need.any()):
            in_group = w.groups[:, chosen].T & w.free_rhymes(slot, state.used)[rows, chosen].unsqueeze(1)  # (B, G)
            rhyme_fit = torch.where(need.view(1, -1, 1), in_group.unsqueeze(1), True)
        # Keep the worlds the character fits; where none does, those its rhyme fits, then its tone.
        alive, done = state.alive.clone(), torch.zeros(len(chosen), dtype=torch.bool)
        for fit in (tone_fit & rhyme_fit, rhyme_fit, tone_fit):
            narrowed = state.alive & fit
            ok = narrowed.flatten(1).any(1) & ~done
            alive[ok] = narrowed[ok]
            done |= ok
        state.alive = alive
        if w.rhyme and (slot in w.rhyme_slots or slot == w.first_slot):
            # Line 1's last character is marked used even when it is a two-reading character whose
            # rhyme is still open: if the poem turns out to rhyme line 1, it must not come back.
            state.used[rows, chosen] = True

    def _note(self, slot: int, state: VerseState, chosen: torch.Tensor) -> None:
        """Record the rules each poem's ``chosen`` character breaks at ``slot``."""
        w = state.worlds
        need = w.needs_rhyme(slot)
        patterns_alive = state.alive.any(2)  # (B, P)
        rows = torch.arange(len(chosen))
        if bool(need.any()):
            in_group = w.groups[:, chosen].T & w.free_rhymes(slot, state.used)[rows, chosen].unsqueeze(1)  # (B, G)
            for b in range(len(chosen)):
                if bool((patterns_alive[b] & ~need).any()):  # a live pattern leaves this slot unrhymed
                    continue
                if not bool((state.alive[b][need].any(0) & in_group[b]).any()):
                    ch = w.tokenizer.tokens[int(chosen[b])]
                    used = bool(state.used[b, chosen[b]])
                    why = "it is already a rhyme" if used else "it does not rhyme with the other lines"
                    state.rhyme_broken.add(b, slot, ch, why)
        if self.tone is None:
            return
        tone_fit = w.tone_ok(slot, chosen).T  # (B, P)
        for b in (~(patterns_alive & tone_fit).any(1)).nonzero().flatten().tolist():
            needs = {int(c) for c in w.req[patterns_alive[b], slot]} - {_FREE}
            want = _WANTS.get(needs.pop(), "a set tone") if len(needs) == 1 else "a set tone"
            ch = w.tokenizer.tokens[int(chosen[b])]
            tones = load_table().tones(ch)
            have = "/".join(sorted(tones)) if tones else "not in the 平水韵 table"
            state.tone_broken.add(b, slot, ch, f"it is {have} where the pattern needs {want}")

    def select(self, state: VerseState, rows: torch.Tensor) -> VerseState:
        return VerseState(
            state.worlds,  # the request's rules and memos, the same for every poem
            state.alive[rows],
            state.used[rows],
            state.rhyme_broken.select(rows),
            state.tone_broken.select(rows),
            state.keywords.select(rows) if state.keywords is not None else None,
        )

    def notes(self, state: VerseState, poem: int) -> list[str]:
        words = state.keywords.missing(poem) if state.keywords is not None else []
        out = [f"The keyword {word} could not be placed whole in the poem." for word in words]
        out += state.rhyme_broken.sentences("rhyme", poem)
        return out + state.tone_broken.sentences(f"{self.tone} tone", poem)


def verse_constraints(
    rhyme: object = False, tone: object = None, rhyme_group: object = None, keywords: bool = False
) -> list[Constraint]:
    """Validated constraints for ``generate_poem(rhyme=…, tone=…, rhyme_group=…, keywords=…)``.

    A ``rhyme_group`` implies ``rhyme=True``; ``keywords`` says the request has keywords to place.
    """
    check_switch("rhyme", rhyme)
    if tone is not None and tone not in TONE_MODES:
        raise InputError(f"tone must be 'relaxed' or 'strict' (or unset), not {tone!r}.")
    if rhyme_group is not None:
        load_table().find_group(rhyme_group)  # type: ignore[arg-type]  # raises a clear InputError
        rhyme = True
    if not (rhyme or tone or keywords):
        return []
    return [VerseRules(bool(rhyme), tone, rhyme_group, keywords)]  # type: ignore[arg-type]
