"""Regulated verse (格律): the 平水韵 table, the tone patterns, and the checker (``tangpoem check``).

One table (``resources/pingshui.json``, built by ``scripts/build_pingshui_table.py``, with the
rhyme readings the corpus attests, :func:`~tangpoem_hf.attested.rhyme_readings`) serves the
checker and the decoding constraints (:mod:`tangpoem_hf.verse`), so a poem written under
constraints is judged by the rules it was written to. A character may have several readings;
wherever a tone is asked for, a character with both a 平 and a 仄 reading passes either way. 入声
counts as 仄. Characters missing from the table are reported as unclassifiable and never satisfy a
checked position.

Forms: 五绝, 七绝 (four lines), 五律, 七律 (eight lines) of five or seven characters. The four
standard patterns are 平起/仄起 × first line rhymed or not; 平起/仄起 is named after the second
character of the first line. Relaxed tone checking is 一三五不论: only the even positions (2, 4, 6)
and the line end count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .attested import rhyme_readings
from .errors import InputError
from .text import OTHER, form_name, is_han, normalize_punctuation, punctuate, to_simplified

TABLE_PATH = Path(__file__).parent / "resources" / "pingshui.json"
PING, ZE = "平", "仄"
TONE_MODES = ("relaxed", "strict")


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
    """Character → groups, in both scripts.

    ``rhymes`` (character → 平声 group names) narrows the groups a character rhymes in to the
    readings poems rhyme it by (居 is listed in 支 and 鱼 but rhymed only in 鱼); its tones stay.
    """

    def __init__(self, groups: Sequence[RhymeGroup], rhymes: Mapping[str, Sequence[str]] | None = None) -> None:
        self.groups = list(groups)
        self.ping_groups = [g for g in self.groups if g.tone == PING]
        index: dict[str, list[int]] = {}
        for g in self.groups:
            for ch in g.chars:
                index.setdefault(ch, []).append(g.index)
        self._index = {ch: tuple(ids) for ch, ids in index.items()}
        by_name = {g.name: g.index for g in self.groups}
        self._rhymes = {ch: frozenset(by_name[name] for name in names) for ch, names in (rhymes or {}).items()}

    def __contains__(self, ch: str) -> bool:
        return ch in self._index

    def groups_of(self, ch: str) -> tuple[int, ...]:
        return self._index.get(ch, ())

    def tones(self, ch: str) -> frozenset[str]:
        """{平}, {仄}, both for a two-reading character, or empty when unclassifiable."""
        return frozenset(self.groups[i].tone for i in self.groups_of(ch))

    def ping_groups_of(self, ch: str) -> frozenset[int]:
        """The 平声 groups ``ch`` rhymes in: the table's, or those of the readings poems rhyme it by."""
        if ch in self._rhymes:
            return self._rhymes[ch]
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


def read_groups(path: str | Path = TABLE_PATH) -> list[RhymeGroup]:
    """The 106 groups of a 平水韵 table file."""
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    return [RhymeGroup(i, g["name"], g["tone"], g["chars"]) for i, g in enumerate(payload["groups"])]


@lru_cache(maxsize=1)
def load_table() -> RhymeTable:
    """The bundled 平水韵 table with the rhyme readings the corpus attests (read once per process)."""
    return RhymeTable(read_groups(), rhyme_readings())


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
