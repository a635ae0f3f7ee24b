"""Blind judging of collections: ten poems of one draw against ten of another, for the same openings.

A judge of one pair of poems cannot see a phrase come back poem after poem
(docs/reports/stock-phrases.md); a reader of a book of poems does. This takes two sets that
``stock_phrases.py`` drew (the same prompts and seeds, in the same order: 五绝 first, then 七绝),
cuts each into collections of ``--size`` consecutive poems of one form, and writes every pair of
collections in a random order (``--limit``: only that many, drawn at random). ``--size 1`` writes
pairs of single poems, as ``judge_pairs.py`` does, to set beside the collections. The key calls the
``--first`` set "generated", so ``score`` counts its wins::

    python experiments/judge_collections.py write --first runs/stock-phrases/2.json \
        --second runs/stock-phrases/1.json --out runs/judging/collections
    # a judge who sees only runs/judging/collections/pairs.md writes answers.json, then:
    python experiments/judge_collections.py score --key runs/judging/collections/key.json --answers answers.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import judge_pairs

from tangpoem_hf.text import join_lines

INSTRUCTIONS = (
    "Each pair holds two collections of short Tang-style poems, ten poems each, by two different poets "
    "who were given the same ten openings. For every pair, say which collection a reader would rather "
    "have as a whole (A or B), and if you can, why in a few words."
)


def collections(
    first: list[list[str]], second: list[list[str]], size: int, seed: int, limit: int | None = None
) -> tuple[list, list]:
    """(pairs, key): the two sets cut into collections of ``size`` poems, A and B drawn at random for
    each pair, the pairs shuffled and the first ``limit`` kept (all when None). A pair whose two
    sides are the same is left out."""
    if len(first) != len(second) or [p[0][0] for p in first] != [p[0][0] for p in second]:
        raise SystemExit("The two sets must hold the same prompts in the same order (stock_phrases.py draws them so).")
    rng = random.Random(seed)
    pairs, key = [], []
    for n, start in enumerate(range(0, len(first) - size + 1, size), start=1):
        ours, theirs = first[start : start + size], second[start : start + size]
        if len({len(p[0]) for p in ours + theirs}) != 1:
            raise SystemExit(f"Collection {n} mixes 五言 and 七言: choose a --size that divides each form's poems.")
        texts = ["\n\n".join(join_lines(p) for p in ours), "\n\n".join(join_lines(p) for p in theirs)]
        if texts[0] == texts[1]:
            continue  # the same poems on both sides: nothing to judge
        generated = rng.choice("AB")
        a, b = texts if generated == "A" else texts[::-1]
        pairs.append({"pair": n, "A": a, "B": b})
        key.append({"pair": n, "generated": generated, "poems": list(range(start, start + size))})
    order = list(range(len(pairs)))
    rng.shuffle(order)
    order = order[:limit]
    pairs = [{**pairs[i], "pair": k} for k, i in enumerate(order, start=1)]
    key = [{**key[i], "pair": k} for k, i in enumerate(order, start=1)]
    return pairs, key


def markdown(pairs: list[dict], size: int) -> str:
    if size == 1:
        return judge_pairs.pairs_markdown(pairs)
    return judge_pairs.pairs_markdown(pairs, "Which collection is better?", INSTRUCTIONS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("--first", type=Path, required=True, help="a stock_phrases.py set: the key's generated one")
    w.add_argument("--second", type=Path, required=True, help="the set it is judged against")
    w.add_argument("--size", type=int, default=10)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--limit", type=int, help="write only this many pairs, drawn at random")
    w.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("score")
    s.add_argument("--key", type=Path, required=True)
    s.add_argument("--answers", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "score":  # the key has judge_pairs.py's shape, so its scoring serves
        return judge_pairs.main(["score", "--key", str(args.key), "--answers", str(args.answers)])
    first, second = (json.loads(p.read_text(encoding="utf-8")) for p in (args.first, args.second))
    pairs, key = collections(first["poems"], second["poems"], args.size, args.seed, args.limit)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pairs.md").write_text(markdown(pairs, args.size), encoding="utf-8")
    settings = {"generated": first["set"], "other": second["set"]}
    key_text = json.dumps({"settings": settings, "key": key}, ensure_ascii=False, indent=2)
    (args.out / "key.json").write_text(key_text, encoding="utf-8")
    print(f"wrote {len(pairs)} pairs to {args.out}/pairs.md; the key is {args.out}/key.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
