"""Build the corpus-derived resources in ``tangpoem_hf/resources/`` (read by ``tangpoem_hf.attested``).

Everything is counted over the Tang corpus (``poet.tang.*.json``, all splits, cleaned and simplified
as for training), so generation needs no corpus at run time:

* ``attested.json``
  - ``doublings``: characters whose doubling (叠字, 萋萋) stands at least ``--min-doubling`` times
    where a word starts in a 五言/七言 line. A repeat across a word boundary (涪江江上) is no 叠字
    and is not counted.
  - ``glued``: for each doubled character, the characters it follows at least ``--min-glued`` times
    (a word: 归去, 白云) and is never doubled after (归去去 never; 一声声 stands, so 一 is not
    listed for 声).
  - ``bound``: first halves of bound words (徘→徊): characters seen at least ``--min-bound`` times,
    followed in at least ``--bound-share`` of them by one and the same character.
  - ``rhymes``: for characters the 平水韵 lists in several 平声 groups, the groups that regulated
    poems rhyme them in (居: 鱼, never 支). A rhyme counts for group g when the poem's other rhyme
    characters share g as their only common group. A character with fewer than ``--min-evidence``
    such rhymes keeps the table's groups; otherwise a group stays if it has ``--min-rhymes``.
* ``bigrams.npz``: every character bigram inside a line, as sorted codes ``first * N + second``
  over the characters ordered by frequency, stored as varint deltas (``deflate``-compressed).

Usage::

    python scripts/build_corpus_resources.py --corpus "$TANGPOEM_CORPUS"
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tangpoem_hf.attested import ATTESTED_PATH, BIGRAMS_PATH, encode_varints
from tangpoem_hf.control import WORD_STARTS, classify_form
from tangpoem_hf.corpus import build_splits
from tangpoem_hf.prosody import RhymeTable, read_groups
from tangpoem_hf.text import split_lines

REGULATED = ("五绝", "七绝", "五律", "七律")


def learn_doublings(lines: Iterable[str], min_count: int = 3) -> str:
    """Characters doubled at a word start of a 五言/七言 line at least ``min_count`` times."""
    counts: Counter[str] = Counter()
    for line in lines:
        for i in WORD_STARTS.get(len(line), ()):
            if i + 1 < len(line) and line[i] == line[i + 1]:
                counts[line[i]] += 1
    return "".join(sorted(ch for ch, n in counts.items() if n >= min_count))


def learn_glued(lines: Iterable[str], doubled: str, min_count: int = 40) -> dict[str, str]:
    """Doubled character → the characters it follows at least ``min_count`` times (a word: 归去) and
    is never doubled after (no 归去去): there the doubling reads as a word and a stray repeat."""
    words: Counter[str] = Counter()
    doubled_after: set[str] = set()
    for line in lines:
        for i, (a, b) in enumerate(zip(line, line[1:])):
            if a != b and b in doubled:
                words[a + b] += 1
                if line[i + 2 : i + 3] == b:
                    doubled_after.add(a + b)
    glued: defaultdict[str, list[str]] = defaultdict(list)
    for pair, n in sorted(words.items()):
        if n >= min_count and pair not in doubled_after:
            glued[pair[1]].append(pair[0])
    return {ch: "".join(before) for ch, before in sorted(glued.items())}


def learn_bound(lines: Iterable[str], min_count: int = 10, share: float = 0.9) -> dict[str, str]:
    """First half → partner, for characters almost always followed by one character (line ends count)."""
    follow: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for line in lines:
        for a, b in zip(line, line[1:] + "\n"):
            follow[a][b] += 1
    bound = {}
    for a, after in follow.items():
        total = sum(after.values())
        b, n = after.most_common(1)[0]
        if total >= min_count and n >= share * total and b not in ("\n", a):
            bound[a] = b
    return dict(sorted(bound.items()))


def rhyme_counts(poems: Iterable[Sequence[str]], table: RhymeTable) -> Counter[tuple[str, int]]:
    """(character, 平声 group) → rhymes in that group, in poems given as their lines."""
    counts: Counter[tuple[str, int]] = Counter()
    for lines in poems:
        ends = [line[-1] for line in lines]
        even = ends[1::2]
        for i, ch in enumerate(even):
            others = [table.ping_groups_of(o) for o in even[:i] + even[i + 1 :]]
            common = frozenset.intersection(*others) if others else frozenset()
            if len(common) == 1 and common <= table.ping_groups_of(ch):
                counts[ch, next(iter(common))] += 1
        common = frozenset.intersection(*[table.ping_groups_of(o) for o in even])
        if len(common) == 1 and common <= table.ping_groups_of(ends[0]):
            counts[ends[0], next(iter(common))] += 1
    return counts


def learn_rhymes(
    poems: Iterable[Sequence[str]], table: RhymeTable, min_evidence: int = 5, min_rhymes: int = 3
) -> dict[str, list[str]]:
    """Character → the 平声 groups it is rhymed in, for characters whose rhymes drop a listed group."""
    counts = rhyme_counts(poems, table)
    out = {}
    for ch in sorted({ch for g in table.ping_groups for ch in g.chars}):
        groups = table.ping_groups_of(ch)
        seen = {g: counts[ch, g] for g in groups}
        if len(groups) < 2 or sum(seen.values()) < min_evidence:
            continue
        kept = sorted(g for g, n in seen.items() if n >= min_rhymes)
        if len(kept) < len(groups):
            out[ch] = [table.groups[g].name for g in kept]
    return out


def bigram_codes(lines: Iterable[str]) -> tuple[str, np.ndarray]:
    """The characters by frequency (ties by code point) and the sorted codes of every bigram."""
    lines = list(lines)
    freq = Counter(ch for line in lines for ch in line)
    chars = "".join(sorted(freq, key=lambda ch: (-freq[ch], ch)))
    index = {ch: i for i, ch in enumerate(chars)}
    pairs = {index[a] * len(chars) + index[b] for line in lines for a, b in zip(line, line[1:])}
    return chars, np.array(sorted(pairs), dtype=np.int64)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="a chinese-poetry folder (poet.tang.*.json)")
    parser.add_argument("--min-doubling", type=int, default=3)
    parser.add_argument("--min-glued", type=int, default=40)
    parser.add_argument("--min-bound", type=int, default=10)
    parser.add_argument("--bound-share", type=float, default=0.9)
    parser.add_argument("--min-evidence", type=int, default=5)
    parser.add_argument("--min-rhymes", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ATTESTED_PATH.parent)
    args = parser.parse_args(argv)

    splits, _ = build_splits(args.corpus)
    texts = [text for split in splits.values() for text in split["text"]]
    lines = [line for text in texts for line in split_lines(text)]
    regulated = [split_lines(text) for text in texts if classify_form(text) in REGULATED]
    table = RhymeTable(read_groups())
    doubled = learn_doublings(lines, args.min_doubling)
    attested = {
        "source": "chinese-poetry@2.0.1 poet.tang.*.json, all splits, simplified",
        "settings": {k: v for k, v in vars(args).items() if k not in ("corpus", "out")},
        "doublings": doubled,
        "glued": learn_glued(lines, doubled, args.min_glued),
        "bound": learn_bound(lines, args.min_bound, args.bound_share),
        "rhymes": learn_rhymes(regulated, table, args.min_evidence, args.min_rhymes),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ATTESTED_PATH.name).write_text(json.dumps(attested, ensure_ascii=False, indent=1) + "\n", "utf-8")
    chars, codes = bigram_codes(lines)
    cps = np.array([ord(ch) for ch in chars], dtype=np.uint32)
    np.savez_compressed(args.out / BIGRAMS_PATH.name, chars=cps, deltas=encode_varints(np.diff(codes, prepend=0)))
    print(
        f"{len(texts)} poems, {len(regulated)} regulated: {len(attested['doublings'])} doublings, "
        f"{sum(map(len, attested['glued'].values()))} glued pairs, "
        f"{len(attested['bound'])} bound words, {len(attested['rhymes'])} characters with fewer rhyme groups, "
        f"{len(codes)} bigrams over {len(chars)} characters"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
