"""Stock phrases: how many of our poems hold the same phrase, against real quatrains.

Judges say our poems "string stock words together". Counting phrases shows how far: this draws
the one default (or each ``--settings``) for ``--num`` held-out Tang 五绝 and 七绝 (their first character
and form, as ``judge_pairs.py`` takes them) with every ``--model``, and lists the three- and
four-character phrases that the most of its poems hold, beside the share of all real Tang 五绝 and
七绝 that hold them. A phrase counts once per poem. The same count over the ``--num`` real poems whose
prompts were used is the control: what a real set of that size repeats. The table replaces the
marked section of ``--doc``::

    TANGPOEM_CORPUS=DIR python experiments/stock_phrases.py --model tangpoem_hf/pretrained --model runs/v5/best
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from doc_sections import write_section

from tangpoem_hf.corpus import build_splits
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.modeling import load_model
from tangpoem_hf.text import split_lines

ROOT = Path(__file__).resolve().parents[1]
QUATRAINS = ("五绝", "七绝")
MARK_START, MARK_END = "<!-- stock phrases: experiments/stock_phrases.py -->", "<!-- end of stock phrases -->"
# A stock phrase: in ≥ 3% of a set's poems (and at least 3 of them) and ≥ 20× its share of real ones.
STOCK_SHARE, STOCK_POEMS, STOCK_RATIO = 0.03, 3, 20


def phrases(lines: Sequence[str], sizes: Sequence[int] = (3, 4)) -> set[str]:
    """The in-line phrases of ``sizes`` characters a poem holds, each once."""
    return {line[i : i + n] for n in sizes for line in lines for i in range(len(line) - n + 1)}


def poem_shares(poems: Sequence[Sequence[str]]) -> Counter:
    """For each phrase, the share of ``poems`` that hold it, in the phrases' sorted order, so that
    ``most_common`` breaks ties the same way in every run (a set's order depends on string hashing)."""
    counts = Counter(p for lines in poems for p in phrases(lines))
    return Counter({p: counts[p] / len(poems) for p in sorted(counts)})


def stock(shares: Counter, real: Counter, poems: int) -> list[tuple[str, float, float]]:
    """(phrase, share here, share in real poems) of the set's stock phrases, the commonest first; a
    phrase inside a longer stock phrase held as often is left out (知何处 beside 不知何处)."""
    least = max(STOCK_SHARE, STOCK_POEMS / poems)
    rows = [(p, s, real[p]) for p, s in shares.most_common() if s >= least and s >= STOCK_RATIO * real[p]]
    return [r for r in rows if not any(r[0] in o[0] and r[0] != o[0] and o[1] >= r[1] for o in rows)]


def prompts_and_real(corpus: str | None, simplified: bool, num: int, seed: int) -> tuple[list[list[str]], Counter]:
    """``num`` held-out Tang 五绝 and 七绝 (half each, drawn with ``seed``), whose first characters and
    forms are the prompts, and the share of all real Tang 五绝 and 七绝 that hold each phrase."""
    splits, _ = build_splits(corpus, simplified=simplified)
    quatrains: dict[str, list[list[str]]] = {form: [] for form in QUATRAINS}
    heldout: dict[str, list[list[str]]] = {form: [] for form in QUATRAINS}
    for split in splits:
        for text, form in zip(splits[split]["text"], splits[split]["form"]):
            if form in quatrains:
                quatrains[form].append(split_lines(text))
                if split in ("validation", "test"):
                    heldout[form].append(split_lines(text))
    rng = random.Random(seed)
    prompts = [p for form in QUATRAINS for p in rng.sample(heldout[form], num // 2)]
    return prompts, poem_shares([p for form in QUATRAINS for p in quatrains[form]])


def summary(name: str, poems: Sequence[Sequence[str]], real: Counter, top: int | None) -> dict:
    """A set's stock phrases (the first ``top``; all when None), the share of its poems holding any, and
    its commonest phrase."""
    shares = poem_shares(poems)
    found = stock(shares, real, len(poems))
    held = sum(any(p in phrases(lines) for p, _, _ in found) for lines in poems) / len(poems)
    commonest = shares.most_common(1)[0]
    return {"set": name, "poems": len(poems), "with_stock": held, "stock": found[:top], "commonest": commonest}


def table(rows: Sequence[dict], command: str) -> str:
    out = [
        f"Measured with `{command}`. A stock phrase is held by at least {STOCK_SHARE:.0%} of a set's poems "
        f"(and {STOCK_POEMS} of them) and "
        f"at least {STOCK_RATIO}× the share of real Tang 五绝 and 七绝 that hold it.",
        "",
        "| set | poems | poems with a stock phrase | commonest phrase | stock phrases: share of poems (of real ones) |",
        "|---|---:|---:|---|---|",
    ]
    for r in rows:
        phrase, share = r["commonest"]
        listed = ", ".join(f"{p} {s:.0%} ({q:.2%})" for p, s, q in r["stock"]) or "none"
        out.append(f"| {r['set']} | {r['poems']} | {r['with_stock']:.0%} | {phrase} {share:.0%} | {listed} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="model folder or Hub repo id (repeat; default: bundled)")
    parser.add_argument(
        "--settings", type=json.loads, action="append", help="generate_poem keyword arguments (JSON, repeatable)"
    )
    parser.add_argument("--num", type=int, default=200, help="prompts: held-out 五绝 and 七绝 in equal numbers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=8, help="stock phrases listed per set")
    parser.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs/reports/stock-phrases.md")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/stock-phrases", help="the poems, as JSON")
    args = parser.parse_args(argv)
    models = args.model or [None]
    prompts, real = prompts_and_real(args.corpus, load_model(models[0]).tokenizer.simplified, args.num, args.seed)
    rows = [summary("real poems (the prompts' own)", prompts, real, args.top)]
    args.out.mkdir(parents=True, exist_ok=True)
    for name in models:
        model = load_model(name)
        for settings in args.settings or [{}]:
            poems = [
                generate_poem(model, first=p[0][0], form=len(p[0]), lines=4, seed=args.seed + i, **settings).lines
                for i, p in enumerate(prompts)
            ]
            label = " ".join([name or "bundled", *([json.dumps(settings, ensure_ascii=False)] if settings else [])])
            drawn = json.dumps({"set": label, "poems": poems}, ensure_ascii=False)
            (args.out / f"{len(rows)}.json").write_text(drawn, encoding="utf-8")
            rows.append(summary(label, poems, real, args.top))
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    command = "python experiments/stock_phrases.py " + " ".join(
        [*(f"--model {m}" for m in models if m), *(f"--settings '{json.dumps(s)}'" for s in args.settings or [])]
        + [f"--num {args.num}"]
    )
    write_section(args.doc, MARK_START, MARK_END, table(rows, command), heading="## Stock phrases, counted")
    print(f"wrote the table to {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
