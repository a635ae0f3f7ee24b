"""Regulated verse (格律): the 平水韵 table, a checker, and decoding constraints that obey it.

One table (``resources/pingshui.json``, built by ``scripts/build_pingshui_table.py``) serves the
checker and the decoder, so a poem written under constraints is judged by the rules it was
written to. A character may have several readings; wherever a tone is asked for, a character with
both a 平 and a 仄 reading passes either way. 入声 counts as 仄. Characters missing from the table
are reported as unclassifiable and never satisfy a checked position.

Forms: 五绝, 七绝 (four lines), 五律, 七律 (eight lines) of five or seven characters. The four
standard patterns are 平起/仄起 × first line rhymed or not; 平起/仄起 is named after the second
character of the first line. Relaxed tone checking is 一三五不论: only the even positions (2, 4, 6)
and the line end count.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from .constraints import Broken, Constraint, PoemSpec
from .errors import InputError
from .text import OTHER, form_name, is_han, normalize_punctuation, punctuate, to_simplified
from .tokenizer import CharTokenizer

TABLE_PATH = Path(__file__).parent / "resources" / "pingshui.json"
PING, ZE = "平", "仄"
TONE_MODES = ("relaxed", "strict")


def verse_defaults(lines: int) -> dict[str, object]:
    """Rhyme and the relaxed tone rule for a 绝句 or 律诗 (4 or 8 lines), nothing for other lengths:
    what ``tangpoem generate`` asks for unless told otherwise, and so what a model card shows."""
    return {"rhyme": True, "tone": "relaxed"} if lines in (4, 8) else {}


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RhymeGroup:
    """One of the 106 groups: 上平一东 … 入声十七洽."""

    index: int
    name: str  # 上平一东
    tone: str  # 平 or 仄
    chars: str

    @property
    def short(self) -> str:
        """The group's title character(s): 东, 先, 十一尤 → 尤."""
        return re.sub(r"^(上平|下平|上声|去声|入声)[一二三四五六七八九十]+", "", self.name)


class RhymeTable:
    """Character → groups, in both scripts."""

    def __init__(self, groups: Sequence[RhymeGroup]) -> None:
        self.groups = list(groups)
        self.ping_groups = [g for g in self.groups if g.tone == PING]
        index: dict[str, list[int]] = {}
        for g in self.groups:
            for ch in g.chars:
                index.setdefault(ch, []).append(g.index)
        self._index = {ch: tuple(ids) for ch, ids in index.items()}

    def __contains__(self, ch: str) -> bool:
        return ch in self._index

    def groups_of(self, ch: str) -> tuple[int, ...]:
        return self._index.get(ch, ())

    def tones(self, ch: str) -> frozenset[str]:
        """{平}, {仄}, both for a two-reading character, or empty when unclassifiable."""
        return frozenset(self.groups[i].tone for i in self.groups_of(ch))

    def ping_groups_of(self, ch: str) -> frozenset[int]:
        return frozenset(i for i in self.groups_of(ch) if self.groups[i].tone == PING)

    def find_group(self, name: str) -> RhymeGroup:
        """A 平声 group by full or short name, either script: 东, 一东, 上平一东, 上平聲一東."""
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"rhyme_group must name a 平声 rhyme group such as 东 or 下平七阳, not {name!r}.")
        key = to_simplified(name.strip()).replace("声", "").replace("韵", "").replace("部", "")
        for g in self.groups:
            plain = g.name.replace("声", "")
            if key in (plain, g.short, plain[2:]):
                if g.tone != PING:
                    raise InputError(f"{g.name} is a 仄声 group; regulated verse rhymes in a 平声 group.")
                return g
        raise InputError(f"rhyme_group must name a 平声 group of the 平水韵 such as 东 or 下平七阳, not {name!r}.")


@lru_cache(maxsize=1)
def load_table(path: str | None = None) -> RhymeTable:
    """The bundled 平水韵 table (read once per process)."""
    payload = json.loads(Path(path or TABLE_PATH).read_text(encoding="utf-8"))
    groups = [RhymeGroup(i, g["name"], g["tone"], g["chars"]) for i, g in enumerate(payload["groups"])]
    return RhymeTable(groups)


# --- patterns ----------------------------------------------------------------------------------

# The four five-character line types; a seven-character line puts two characters of the opposite
# tone in front (仄仄平平仄 → 平平仄仄平平仄).
_LINE5 = {"A": "仄仄平平仄", "B": "平平仄仄平", "C": "平平平仄仄", "D": "仄仄仄平平"}
# Quatrain orders for five-character verse; lines 5-8 of a 律 repeat the unrhymed quatrain.
_QUATRAINS = (("ABCD", "ABCD"), ("DBCD", "ABCD"), ("CDAB", "CDAB"), ("BDAB", "CDAB"))


@dataclass(frozen=True)
class Pattern:
    """One standard tone pattern for a poem of ``lines`` lines of ``size`` characters."""

    size: int
    kinds: tuple[str, ...]  # line type per line, A-D
    first_rhymed: bool

    @property
    def lines(self) -> list[str]:
        return [line_pattern(k, self.size) for k in self.kinds]

    @property
    def name(self) -> str:
        start = "平起" if self.lines[0][1] == PING else "仄起"
        return start + ("首句入韵" if self.first_rhymed else "首句不入韵")


def line_pattern(kind: str, size: int) -> str:
    five = _LINE5[kind]
    if size == 5:
        return five
    head = ZE if five[0] == PING else PING
    return head * 2 + five


def patterns(size: int, lines: int) -> list[Pattern]:
    """The four standard patterns, extended to ``lines`` lines by repeating the unrhymed quatrain."""
    out = []
    for first, rest in _QUATRAINS:
        kinds = tuple(first[i] if i < 4 else rest[i % 4] for i in range(lines))
        out.append(Pattern(size, kinds, first_rhymed=first[0] in "BD"))
    return out


def relaxed_columns(size: int) -> tuple[int, ...]:
    """0-based columns that count under 一三五不论: positions 2, 4, 6 and the line end."""
    return tuple(c for c in range(size) if c % 2 == 1 or c == size - 1)


# --- the checker -------------------------------------------------------------------------------


@dataclass
class Mismatch:
    line: int  # 1-based
    position: int  # 1-based
    char: str
    expected: str


@dataclass
class PoemReport:
    """Everything the checker found; :meth:`to_dict` is JSON-able, :meth:`text` readable."""

    text: str
    lines: list[str]
    form: str | None
    format_ok: bool
    format_message: str
    rhyme_ok: bool | None = None
    rhyme_group: str | None = None
    rhyme_chars: list[str] = field(default_factory=list)
    first_line_rhymes: bool | None = None
    repeated_rhymes: list[str] = field(default_factory=list)
    rhyme_message: str = ""
    pattern: str | None = None
    pattern_lines: list[str] = field(default_factory=list)
    strict_ok: bool | None = None
    relaxed_ok: bool | None = None
    strict_mismatches: list[Mismatch] = field(default_factory=list)
    relaxed_mismatches: list[Mismatch] = field(default_factory=list)
    nian: list[bool] = field(default_factory=list)  # 粘 between couplets, per junction
    dui: list[bool] = field(default_factory=list)  # 对 within each couplet
    gu_ping: list[int] = field(default_factory=list)  # 1-based lines with 孤平
    san_ping_wei: list[int] = field(default_factory=list)  # 1-based lines with 三平尾
    unknown: list[str] = field(default_factory=list)
    tones: list[str] = field(default_factory=list)  # per line: 平/仄, ⊙ both, ？ unclassifiable

    @property
    def passed(self) -> bool:
        """Format, rhyme and relaxed tone all hold."""
        return bool(self.format_ok and self.rhyme_ok and self.relaxed_ok)

    def to_dict(self) -> dict[str, Any]:
        def mm(items: list[Mismatch]) -> list[dict]:
            return [m.__dict__.copy() for m in items]

        return {
            "text": self.text,
            "lines": self.lines,
            "form": self.form,
            "passed": self.passed,
            "format": {
                "ok": self.format_ok,
                "line_count": len(self.lines),
                "line_lengths": [len(x) for x in self.lines],
                "message": self.format_message,
            },
            "rhyme": {
                "ok": self.rhyme_ok,
                "group": self.rhyme_group,
                "chars": self.rhyme_chars,
                "first_line_rhymes": self.first_line_rhymes,
                "repeated": self.repeated_rhymes,
                "message": self.rhyme_message,
            },
            "tone": {
                "pattern": self.pattern,
                "pattern_lines": self.pattern_lines,
                "actual": self.tones,
                "strict_ok": self.strict_ok,
                "relaxed_ok": self.relaxed_ok,
                "strict_mismatches": mm(self.strict_mismatches),
                "relaxed_mismatches": mm(self.relaxed_mismatches),
                "nian": self.nian,
                "dui": self.dui,
                "gu_ping": self.gu_ping,
                "san_ping_wei": self.san_ping_wei,
            },
            "unknown": self.unknown,
        }

    def text_report(self) -> str:
        def mark(ok: bool | None) -> str:
            return "—" if ok is None else "✓" if ok else "✗"

        out = [f"{self.form or '不合格式'}  {'PASS' if self.passed else 'FAIL'}"]
        out.append(f"  format  {mark(self.format_ok)} {self.format_message}")
        if not self.format_ok:
            return "\n".join(out)
        out.append(f"  rhyme   {mark(self.rhyme_ok)} {self.rhyme_message}")
        if self.repeated_rhymes:
            out.append(f"          repeated rhyme characters: {''.join(self.repeated_rhymes)}")
        n_strict, n_relaxed = len(self.strict_mismatches), len(self.relaxed_mismatches)
        out.append(
            f"  tone    {self.pattern}: relaxed {mark(self.relaxed_ok)} ({n_relaxed} off), "
            f"strict {mark(self.strict_ok)} ({n_strict} off)"
        )
        off = {(m.line, m.position) for m in self.strict_mismatches}
        hard = {(m.line, m.position) for m in self.relaxed_mismatches}
        # Each CJK character is two columns wide, so the headings are padded to the lines' width.
        width = 2 * max(map(len, self.lines))
        out.append(f"    {'line':<{width}}  {'pattern':<{width}}  {'yours':<{width}}  off")
        for i, (line, want, got) in enumerate(zip(self.lines, self.pattern_lines, self.tones), start=1):
            marks = "".join("✗" if (i, p) in hard else "·" if (i, p) in off else " " for p in range(1, len(line) + 1))
            out.append(f"    {line}  {want}  {got}  {marks}")
        out.append(
            f"  粘 {mark(all(self.nian))}  对 {mark(all(self.dui))}"
            + (f"  孤平: line {', '.join(map(str, self.gu_ping))}" if self.gu_ping else "")
            + (f"  三平尾: line {', '.join(map(str, self.san_ping_wei))}" if self.san_ping_wei else "")
        )
        if self.unknown:
            out.append(f"  unclassifiable characters: {''.join(self.unknown)}")
        out.append(
            "  (pattern: the 平仄 the form asks for; yours: the poem's own; off: ✗ breaks the relaxed rule, "
            "· only the strict one; ⊙ two readings, ？ not in the table)"
        )
        return "\n".join(out)


def poem_lines(text: str) -> list[str]:
    """Lines of a poem given with ，。, one line per row, or bare (cut by its length, as
    :func:`~tangpoem_hf.text.punctuate` does); anything but Han characters is dropped."""
    parts = re.split(r"[，。\s]+", punctuate(normalize_punctuation(text).strip()))
    lines = ["".join(ch for ch in part if is_han(ch)) for part in parts]
    return [line for line in lines if line]


def _fits(tones: frozenset[str], want: str) -> bool:
    return want in tones


def _tone_mark(tones: frozenset[str]) -> str:
    return "⊙" if len(tones) == 2 else next(iter(tones)) if tones else "？"


def _shape(lines: list[str]) -> str:
    """What a poem's lines hold, in words: "1 line of 5 characters", "4 lines of 5 and 7 characters"."""
    sizes = sorted({len(x) for x in lines})
    count = f"{len(lines)} line{'' if len(lines) == 1 else 's'}"
    if not sizes:
        return "no line of Chinese characters"
    lengths = " and ".join([", ".join(map(str, sizes[:-1])), str(sizes[-1])] if len(sizes) > 1 else [str(sizes[0])])
    return f"{count} of {lengths} character{'' if sizes == [1] else 's'}"


def check_poem(text: str, form: str | None = None, table: RhymeTable | None = None) -> PoemReport:
    """Check one poem's format, rhyme and tones; ``form`` (e.g. "七绝") demands that form."""
    table = table or load_table()
    lines = poem_lines(text)
    sizes = {len(x) for x in lines}
    detected = form_name(sizes.pop(), len(lines)) if len(sizes) == 1 else OTHER
    if detected == OTHER:
        msg = f"{_shape(lines)}; a 绝句 has 4 lines and a 律诗 8, all of 5 or all of 7 characters"
        return PoemReport(text, lines, None, False, msg)
    if form is not None and detected != form:
        return PoemReport(text, lines, detected, False, f"a {detected}, not the {form} asked for")
    report = PoemReport(text, lines, detected, True, f"{len(lines)} lines of {len(lines[0])} characters")
    report.unknown = sorted({ch for line in lines for ch in line if ch not in table})
    report.tones = ["".join(_tone_mark(table.tones(ch)) for ch in line) for line in lines]
    _check_rhyme(report, table)
    _check_tones(report, table)
    return report


def _check_rhyme(report: PoemReport, table: RhymeTable) -> None:
    ends = [line[-1] for line in report.lines]
    even = ends[1::2]
    sets = [table.ping_groups_of(ch) for ch in even]
    common = frozenset.intersection(*sets)
    first = table.ping_groups_of(ends[0])
    if common:
        best = min(common & first) if common & first else min(common)
    else:  # the group most even lines share, to name the odd ones out
        counts: dict[int, int] = {}
        for s in sets:
            for g in s:
                counts[g] = counts.get(g, 0) + 1
        best = max(counts, key=lambda g: (counts[g], -g)) if counts else None
    report.rhyme_ok = bool(common)
    report.rhyme_group = table.groups[best].name if best is not None else None
    report.first_line_rhymes = best is not None and best in first
    rhyme_chars = ([ends[0]] if report.first_line_rhymes else []) + even
    report.rhyme_chars = rhyme_chars
    report.repeated_rhymes = sorted({ch for ch in rhyme_chars if rhyme_chars.count(ch) > 1})
    if common:
        report.rhyme_message = f"{report.rhyme_group}: {' '.join(rhyme_chars)}" + (
            "" if report.first_line_rhymes else " (line 1 unrhymed)"
        )
    else:
        odd = [
            f"line {2 * i + 2} {ch} ({'/'.join(table.groups[g].name for g in table.groups_of(ch)) or 'unclassifiable'})"
            for i, (ch, s) in enumerate(zip(even, sets))
            if best is None or best not in s
        ]
        group = report.rhyme_group or "no 平声 group"
        report.rhyme_message = f"even lines do not share one 平声 group; against {group}: " + "; ".join(odd)


def _check_tones(report: PoemReport, table: RhymeTable) -> None:
    lines, size = report.lines, len(report.lines[0])
    tones = [[table.tones(ch) for ch in line] for line in lines]
    loose = relaxed_columns(size)
    best: tuple | None = None
    for pat in patterns(size, len(lines)):
        strict, relaxed = [], []
        for i, (want_line, line) in enumerate(zip(pat.lines, lines)):
            for c, want in enumerate(want_line):
                if not _fits(tones[i][c], want):
                    m = Mismatch(i + 1, c + 1, line[c], want)
                    strict.append(m)
                    if c in loose:
                        relaxed.append(m)
        gu_ping, san_ping = _faults(pat, tones)
        key = (len(relaxed), len(gu_ping) + len(san_ping), len(strict))  # ties: the kindest reading
        if best is None or key < best[0]:
            best = (key, pat, strict, relaxed, gu_ping, san_ping)
    assert best is not None
    _, pat, strict, relaxed, report.gu_ping, report.san_ping_wei = best
    report.pattern, report.pattern_lines = pat.name, pat.lines
    report.strict_mismatches, report.relaxed_mismatches = strict, relaxed
    report.strict_ok, report.relaxed_ok = not strict, not relaxed
    second = [t[1] for t in tones]
    report.dui = [bool(second[i] and second[i + 1] and second[i] | second[i + 1] == {PING, ZE} and
                       not (len(second[i]) == 1 and second[i] == second[i + 1]))
                  for i in range(0, len(lines) - 1, 2)]  # fmt: skip
    report.nian = [bool(second[i] & second[i + 1]) for i in range(1, len(lines) - 1, 2)]


def _faults(pat: Pattern, tones: list[list[frozenset[str]]]) -> tuple[list[int], list[int]]:
    """1-based lines with 孤平 (仄 where 平平仄仄平 starts) and 三平尾 (three certain 平 at the end)."""
    size = pat.size
    gu_ping = [i + 1 for i, kind in enumerate(pat.kinds) if kind == "B" and tones[i][size - 5] == {ZE}]
    san_ping = [i + 1 for i, line in enumerate(tones) if all(t == {PING} for t in line[-3:])]
    return gu_ping, san_ping


# --- decoding constraints ----------------------------------------------------------------------
#
# Both constraints work on (batch, vocab) bool masks cut from tables built once per tokenizer.
# The pattern is not fixed in advance: each poem keeps the set of the four patterns that still fit
# its characters (the forced ones first), a slot allows the union of what they accept, and every
# sampled character prunes the set. So the first characters choose 平起/仄起 and whether line 1
# rhymes, and the model's own choices settle whatever they leave open.
#
# Back-off: the decoder's _combine skips a constraint for a poem when it would leave no candidate.
# The mandatory constraints (Han characters, forced characters) come first, so a forced character
# that breaks the meter is kept and only that slot goes unconstrained; the shape is fixed by the
# decoder, so the poem is never malformed. Each break is recorded in the walk's state and returned
# as a note with the poem. Rhyme groups are only chosen among those with enough characters in the
# vocabulary, so the rhyme mask itself never runs dry.


@dataclass
class _Masks:
    can_ping: torch.Tensor  # (V,) has a 平 reading
    can_ze: torch.Tensor  # (V,) has a 仄 reading
    tone_rows: torch.Tensor  # (4, V): 平, 仄, either (classified), anything
    group: torch.Tensor  # (G, V) float, 平声 group membership
    group_of: torch.Tensor  # (V, G) bool
    group_size: torch.Tensor  # (G,) vocabulary characters per 平声 group
    group_ids: list[int]  # table index of each 平声 group


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
    tone_rows = torch.stack([can_ping, can_ze, can_ping | can_ze, torch.ones(vocab, dtype=torch.bool)])
    group = group_of.T.contiguous().float()
    masks = _Masks(can_ping, can_ze, tone_rows, group, group_of, group_of.sum(0), group_ids)
    _CACHE[tokenizer] = masks
    return masks


_FREE, _NEED_PING, _NEED_ZE = 0, 1, 2


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
class ToneState:
    """One batch's tone state: the patterns each poem may still follow, and where it broke one."""

    tokenizer: CharTokenizer
    masks: _Masks
    req: torch.Tensor  # (patterns, slots) codes
    first_rhymed: torch.Tensor  # (patterns,) bool
    alive: torch.Tensor  # (batch, patterns) bool
    broken: Broken

    def fits(self, slot: int, chosen: torch.Tensor, req: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, patterns): whether each chosen character fits each pattern at ``slot``."""
        codes = (self.req if req is None else req)[:, slot].unsqueeze(0)
        cp, cz = self.masks.can_ping[chosen].unsqueeze(1), self.masks.can_ze[chosen].unsqueeze(1)
        return (codes == _FREE) | ((codes == _NEED_PING) & cp) | ((codes == _NEED_ZE) & cz)

    def first_line_rhyme(self) -> torch.Tensor:
        """Per poem: 1 when every remaining pattern rhymes line 1, 0 when none does, -1 when open."""
        rhymed = self.alive & self.first_rhymed
        unrhymed = self.alive & ~self.first_rhymed
        return torch.where(~unrhymed.any(1), 1, torch.where(~rhymed.any(1), 0, -1))


class ToneConstraint(Constraint):
    """Each slot allows the tones the poem's still-possible patterns accept there.

    ``strict`` checks every position; ``relaxed`` the even positions and the line end, and also
    keeps the two classic faults that 一三五不论 lets through out of the poem: 孤平 (a 仄 first
    character in 平平仄仄平) and 三平尾 (平 as the third-last character of 仄仄仄平平).
    """

    def __init__(self, mode: str = "relaxed") -> None:
        if mode not in TONE_MODES:
            raise InputError(f"tone must be 'relaxed' or 'strict' (or unset), not {mode!r}.")
        self.mode = mode
        self.name = f"{mode} tone"

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> ToneState:
        req = _requirements(spec, self.mode)
        first_rhymed = torch.tensor([p.first_rhymed for p in patterns(spec.form, spec.lines)])
        state = ToneState(tokenizer, masks_for(tokenizer), req, first_rhymed, torch.zeros(0), Broken(spec, batch_size))
        # The patterns that fit every forced character; if none does, those that break the relaxed
        # rule least and then this mode's: so forced characters that rule out every strict pattern
        # still get a poem that keeps the relaxed rule where it can (the break is noted).
        loose = _requirements(spec, "relaxed")
        misfit = torch.zeros(len(req), dtype=torch.long)
        for slot, ch in spec.forced.items():
            i = torch.tensor([tokenizer.index[ch]])
            misfit += (~state.fits(slot, i, loose)[0]).long() * (spec.slots + 1) + (~state.fits(slot, i)[0]).long()
        state.alive = (misfit == misfit.min()).unsqueeze(0).repeat(batch_size, 1)
        return state

    def allowed(self, slot: int, spec: PoemSpec, state: ToneState) -> torch.Tensor | None:
        codes = state.req[:, slot].unsqueeze(0)
        free = (state.alive & (codes == _FREE)).any(1)
        ping = (state.alive & (codes == _NEED_PING)).any(1)
        ze = (state.alive & (codes == _NEED_ZE)).any(1)
        if bool(free.all()):
            return None
        row = torch.where(free, 3, torch.where(ping & ze, 2, torch.where(ping, 0, 1)))
        if bool((row == row[0]).all()):
            return state.masks.tone_rows[int(row[0])]
        return state.masks.tone_rows[row]

    def observe(self, slot: int, spec: PoemSpec, state: ToneState, chosen: torch.Tensor) -> None:
        narrowed = state.alive & state.fits(slot, chosen)
        ok = narrowed.any(1)
        for b in (~ok).nonzero().flatten().tolist():
            needs = {int(c) for c in state.req[state.alive[b], slot]} - {_FREE}
            want = "平" if needs == {_NEED_PING} else "仄" if needs == {_NEED_ZE} else "a set tone"
            ch = state.tokenizer.tokens[int(chosen[b])]
            tones = load_table().tones(ch)
            have = "/".join(sorted(tones)) if tones else "not in the 平水韵 table"
            state.broken.add(b, slot, ch, f"it is {have} where the pattern needs {want}")
        state.alive = torch.where(ok.unsqueeze(1), narrowed, state.alive)

    def notes(self, state: ToneState, poem: int) -> list[str]:
        return state.broken.sentences(self.name, poem)


@dataclass
class RhymeState:
    """One batch's rhyme state: the groups each poem may still rhyme in and the rhymes it used."""

    tokenizer: CharTokenizer
    masks: _Masks
    rhyme_slots: set[int]
    first_slot: int
    groups: torch.Tensor  # (batch, G) bool
    used: torch.Tensor  # (batch, V) bool
    reserved: dict[int, int]  # slot → id of a forced character at a rhyme position
    broken: Broken
    tone: ToneState | None = None  # the tone state of the same poems, which decides whether line 1 rhymes

    def rhyme_mask(self, slot: int) -> torch.Tensor:
        """(batch, V): characters of a group still possible, unused, not forced at another rhyme slot."""
        mask = ((self.groups.float() @ self.masks.group) > 0) & ~self.used
        others = [i for s, i in self.reserved.items() if s != slot]
        if others:
            mask[:, others] = False
        return mask

    def first_line_rhyme(self) -> torch.Tensor:
        return self.tone.first_line_rhyme() if self.tone is not None else torch.full((len(self.used),), -1)


class RhymeConstraint(Constraint):
    """Even lines end in one 平声 group, never with the same character twice.

    The group is the user's, or it is chosen by the first rhyming character (the intersection of
    its groups, for a character listed in several). Line 1 may rhyme: it ends either in the group
    or in a 仄 character, as the tone constraint's remaining patterns allow.
    """

    name = "rhyme"

    def __init__(self, group: str | None = None) -> None:
        self.group_name = group

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> RhymeState:
        m = masks_for(tokenizer)
        rhyme_slots = {line * spec.form + spec.form - 1 for line in range(1, spec.lines, 2)}
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
        # Forced characters at rhyme positions (a kept line, say) narrow the group from the start
        # and are kept for their own slot, so no earlier line takes them.
        reserved = {}
        for slot, ch in spec.forced.items():
            i = tokenizer.index[ch]
            if slot in rhyme_slots:
                reserved[slot] = i
                if bool((viable & m.group_of[i]).any()):
                    viable = viable & m.group_of[i]
        groups = viable.unsqueeze(0).repeat(batch_size, 1)
        used = torch.zeros(batch_size, len(tokenizer), dtype=torch.bool)
        return RhymeState(tokenizer, m, rhyme_slots, spec.form - 1, groups, used, reserved, Broken(spec, batch_size))

    def allowed(self, slot: int, spec: PoemSpec, state: RhymeState) -> torch.Tensor | None:
        if slot in state.rhyme_slots:
            return state.rhyme_mask(slot)
        if slot != state.first_slot or spec.lines < 2:
            return None
        first = state.first_line_rhyme()
        if bool((first == 0).all()):
            return None
        rhyme = state.rhyme_mask(slot)
        either = rhyme | state.masks.can_ze
        return torch.where((first == 1).unsqueeze(1), rhyme, torch.where((first == 0).unsqueeze(1), True, either))

    def observe(self, slot: int, spec: PoemSpec, state: RhymeState, chosen: torch.Tensor) -> None:
        if slot in state.rhyme_slots:
            commit = torch.ones(len(chosen), dtype=torch.bool)
            must = commit
        elif slot == state.first_slot and spec.lines >= 2:
            first = state.first_line_rhyme()
            ping_only = state.masks.can_ping[chosen] & ~state.masks.can_ze[chosen]
            commit = ping_only | (first == 1)
            must = first == 1
        else:
            return
        rows = torch.arange(len(chosen))
        rhymes = state.rhyme_mask(slot)[rows, chosen]
        for b in (must & ~rhymes).nonzero().flatten().tolist():
            ch = state.tokenizer.tokens[int(chosen[b])]
            used = bool(state.used[b, chosen[b]])
            why = "it is already a rhyme" if used else "it does not rhyme with the other lines"
            state.broken.add(b, slot, ch, why)
        narrowed = state.groups & state.masks.group_of[chosen]
        keep = commit.unsqueeze(1) & narrowed.any(1, keepdim=True)
        state.groups = torch.where(keep, narrowed, state.groups)
        # Line 1's last character is marked used even when it is a two-reading character whose
        # rhyme is still open: if the poem turns out to rhyme line 1, it must not come back.
        state.used[rows, chosen] = True

    def notes(self, state: RhymeState, poem: int) -> list[str]:
        return state.broken.sentences(self.name, poem)


class RegulatedVerse(Constraint):
    """Rhyme and tone as one constraint, so the decoder pays one mask merge per slot, not two,
    and the rhyme part can see which patterns the tone part still allows.

    The parts are ANDed with the decoder's own back-off rule, rhyme first: where the two would
    leave a poem no candidate, the tone mask is dropped for that poem and slot (and the tone
    part notes the break).
    """

    name = "regulated verse"

    def __init__(self, rhyme: RhymeConstraint | None, tone: ToneConstraint | None) -> None:
        self.rhyme, self.tone = rhyme, tone

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> tuple:
        tone = self.tone.start(spec, tokenizer, batch_size) if self.tone else None
        rhyme = self.rhyme.start(spec, tokenizer, batch_size) if self.rhyme else None
        if rhyme is not None:
            rhyme.tone = tone
        return rhyme, tone

    def _parts(self, state: tuple) -> list[tuple[Constraint, object]]:
        return [(c, s) for c, s in zip((self.rhyme, self.tone), state) if c is not None]

    def allowed(self, slot: int, spec: PoemSpec, state: tuple) -> torch.Tensor | None:
        masks = [m for m in (c.allowed(slot, spec, s) for c, s in self._parts(state)) if m is not None]
        if len(masks) < 2:
            return masks[0] if masks else None
        both = masks[0] & masks[1]
        return torch.where(both.any(-1, keepdim=True), both, masks[0])

    def observe(self, slot: int, spec: PoemSpec, state: tuple, chosen: torch.Tensor) -> None:
        for c, s in self._parts(state):
            c.observe(slot, spec, s, chosen)

    def notes(self, state: tuple, poem: int) -> list[str]:
        return [note for c, s in self._parts(state) for note in c.notes(s, poem)]


def prosody_constraints(rhyme: object = False, tone: object = None, rhyme_group: object = None) -> list[Constraint]:
    """Validated constraints for ``generate_poem(rhyme=…, tone=…, rhyme_group=…)``.

    A ``rhyme_group`` implies ``rhyme=True``. The rhyme part comes first, so if the two ever clash
    for a poem the tone mask is the one dropped (see :class:`RegulatedVerse`).
    """
    if not isinstance(rhyme, bool):
        raise InputError(f"rhyme must be True or False, not {rhyme!r}.")
    if tone is not None and tone not in TONE_MODES:
        raise InputError(f"tone must be 'relaxed' or 'strict' (or unset), not {tone!r}.")
    if rhyme_group is not None:
        load_table().find_group(rhyme_group)  # type: ignore[arg-type]  # raises a clear InputError
        rhyme = True
    tone_c = ToneConstraint(tone) if tone is not None else None  # type: ignore[arg-type]
    rhyme_c = RhymeConstraint(rhyme_group) if rhyme else None  # type: ignore[arg-type]
    return [RegulatedVerse(rhyme_c, tone_c)] if rhyme_c or tone_c else []
