"""Run the regulated-verse checker over the whole Tang corpus and write ``docs/reports/prosody.md``.

    python experiments/prosody_corpus_table.py [--corpus DIR] [--out docs/reports/prosody.md]

Every poem the corpus loader classifies as 五绝/七绝/五律/七律 (all three splits) is checked. The
table gives, per form, the rhyme pass rate and the relaxed (一三五不论) whole-poem tone pass rate,
with two-reading characters allowed either way, beside an independent check of the same corpus.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from tangpoem_hf.corpus import SPLITS, build_splits
from tangpoem_hf.prosody import PING, TABLE_PATH, ZE, RhymeGroup, RhymeTable, check_poem, load_table
from tangpoem_hf.text import FORM_SHAPES, to_simplified

FORMS = tuple(sorted(FORM_SHAPES, key=FORM_SHAPES.get))  # 五绝, 五律, 七绝, 七律: by line size, then length
INDEPENDENT = {"五绝": (74, 49), "五律": (82, 58), "七绝": (90, 79), "七律": (84, 75)}
DOC = Path(__file__).resolve().parents[1] / "docs" / "reports" / "prosody.md"


class LenientTable(RhymeTable):
    """The table, but an unclassifiable character fits either tone (what a lenient checker does)."""

    def tones(self, ch: str) -> frozenset[str]:
        return super().tones(ch) or frozenset({PING, ZE})


def package_only_table(simplified: bool = False) -> RhymeTable:
    """Only the upstream package's own characters (and, if asked, their t2s forms): no supplement."""
    payload = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    groups = []
    for i, g in enumerate(payload["groups"]):
        chars = g["chars"][: g["source_chars"]]
        groups.append(RhymeGroup(i, g["name"], g["tone"], chars + (to_simplified(chars) if simplified else "")))
    return RhymeTable(groups)


def variants(corpus: str | None) -> dict[str, dict[str, tuple[float, float]]]:
    """Rhyme / relaxed rates per form under other choices, to explain a gap to another check."""
    full = load_table()
    runs = {
        "ours (simplified text, full table)": (True, full),
        "unclassifiable characters fit either tone": (True, LenientTable(full.groups)),
        "simplified text, package table + t2s forms (no supplement)": (True, package_only_table(True)),
        "traditional text, package-only table": (False, package_only_table()),
    }
    texts: dict[bool, dict[str, list[str]]] = {}
    out = {}
    for name, (simplified, table) in runs.items():
        if simplified not in texts:
            splits, _ = build_splits(corpus, simplified=simplified)
            texts[simplified] = {f: [] for f in FORMS}
            for split in SPLITS:
                for text, form in zip(splits[split]["text"], splits[split]["form"]):
                    if form in texts[simplified]:
                        texts[simplified][form].append(text)
        out[name] = {}
        for form, items in texts[simplified].items():
            reports = [check_poem(t, table=table) for t in items]
            n = len(reports) or 1
            out[name][form] = (
                100 * sum(bool(r.rhyme_ok) for r in reports) / n,
                100 * sum(bool(r.relaxed_ok) for r in reports) / n,
            )
    return out


def render_variants(rows: dict[str, dict[str, tuple[float, float]]]) -> str:
    head = "| check | " + " | ".join(FORMS) + " |\n|---|" + "---:|" * len(FORMS)
    lines = [head, "| independent check | " + " | ".join(f"~{a}% / ~{b}%" for a, b in INDEPENDENT.values()) + " |"]
    for name, per_form in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{a:.1f}% / {b:.1f}%" for a, b in per_form.values()) + " |")
    return "\n".join(lines)


def tally(corpus: str | None) -> dict[str, dict]:
    """Per form: counts of poems passing each check, and the 仄-rhymed share of rhyme failures."""
    splits, _ = build_splits(corpus)
    table = load_table()
    stats: dict[str, Counter] = {f: Counter() for f in FORMS}
    for split in SPLITS:
        for text, form in zip(splits[split]["text"], splits[split]["form"]):
            if form not in stats:
                continue
            r = check_poem(text, table=table)
            s = stats[form]
            s["poems"] += 1
            s["rhyme"] += bool(r.rhyme_ok)
            s["relaxed"] += bool(r.relaxed_ok)
            s["strict"] += bool(r.strict_ok)
            s["all"] += r.passed
            s["unknown"] += bool(r.unknown)
            s["gu_ping"] += bool(r.gu_ping)
            s["san_ping_wei"] += bool(r.san_ping_wei)
            s["nian_dui"] += all(r.nian) and all(r.dui)
            if not r.rhyme_ok:
                ends = [line[-1] for line in r.lines[1::2]]
                if all(table.tones(ch) == {"仄"} for ch in ends):
                    s["ze_rhymed"] += 1  # every even line ends in a 仄-only character: a 仄韵 poem
            if r.rhyme_ok and r.first_line_rhymes:
                s["first_rhymes"] += 1
    return {f: dict(c) for f, c in stats.items()}


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}%" if d else "—"


def render(stats: dict[str, dict]) -> str:
    rows = [
        "| form | poems | rhyme | relaxed tone | independent rhyme / relaxed | strict tone | "
        "rhyme + relaxed | 粘对 (2nd char) | 孤平 | 三平尾 | 仄-rhymed | with unclassifiable |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for form in FORMS:
        s = stats[form]
        n = s.get("poems", 0)
        ind = INDEPENDENT[form]
        rows.append(
            f"| {form} | {n} | {pct(s.get('rhyme', 0), n)} | {pct(s.get('relaxed', 0), n)} | ~{ind[0]}% / ~{ind[1]}% "
            f"| {pct(s.get('strict', 0), n)} | {pct(s.get('all', 0), n)} | {pct(s.get('nian_dui', 0), n)} "
            f"| {pct(s.get('gu_ping', 0), n)} | {pct(s.get('san_ping_wei', 0), n)} "
            f"| {pct(s.get('ze_rhymed', 0), n)} | {pct(s.get('unknown', 0), n)} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument("--json", type=Path, help="also write the raw counts here")
    args = parser.parse_args()
    stats = tally(args.corpus)
    tables = {"table": render(stats), "variants": render_variants(variants(args.corpus))}
    print("\n\n".join(tables.values()))
    if args.json:
        args.json.write_text(json.dumps(stats, ensure_ascii=False, indent=2), encoding="utf-8")
    text = args.out.read_text(encoding="utf-8") if args.out.exists() else "# Regulated verse in the Tang corpus\n"
    for key, body in tables.items():  # fill the marked blocks, keeping the prose around them
        begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = head + begin + "\n" + body + "\n" + end + rest.split(end, 1)[1]
        else:
            text += f"\n{begin}\n{body}\n{end}\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
