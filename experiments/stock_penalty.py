"""A first try at losing the stock phrases: the line search marks down poems that hold one.

``stock_phrases.py`` found the one default writing a stock phrase (不知何处) in four poems of five.
This tries the bluntest remedy before a principled one: ``list`` draws the default on prompts of
another seed than the test's and keeps the stock phrases it finds; ``draw`` then draws the test's
prompts with the ranking score less ``--penalty`` for each listed phrase a candidate holds (the
decoder's own score, patched here, not in the package), and writes the set in ``stock_phrases.py``'s
format for ``judge_collections.py``, with its stock share::

    TANGPOEM_CORPUS=DIR python experiments/stock_penalty.py list --seed 1 --out runs/stock-penalty/list.json
    TANGPOEM_CORPUS=DIR python experiments/stock_penalty.py draw --phrases runs/stock-penalty/list.json \
        --penalty 0.2 --out runs/stock-penalty/p0.2.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from unittest import mock

from stock_phrases import phrases, prompts_and_real, summary

from tangpoem_hf import decoding
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.modeling import load_model


def penalised(listed: Collection[str], penalty: float) -> AbstractContextManager:
    """The decoder's ranking score less ``penalty`` per listed phrase the poem's lines hold."""
    score = decoding._score

    def patched(logp: float, tokens: int, lines: Sequence[str], forced: Collection[int], kind: str = "mean") -> float:
        return score(logp, tokens, lines, forced, kind) - penalty * len(phrases(lines) & set(listed))

    return mock.patch.object(decoding, "_score", patched)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("list", "draw"):
        p = sub.add_parser(name)
        p.add_argument("--model", help="model folder or Hub repo id (default: the bundled model)")
        p.add_argument("--num", type=int, default=200)
        p.add_argument("--seed", type=int, default=0, help="the prompts' seed (stock_phrases.py's)")
        p.add_argument("--corpus")
        p.add_argument("--out", type=Path, required=True)
        if name == "draw":
            p.add_argument("--phrases", type=Path, required=True)
            p.add_argument("--penalty", type=float, default=0.2)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    prompts, real = prompts_and_real(args.corpus, model.tokenizer.simplified, args.num, args.seed)
    listed = json.loads(args.phrases.read_text(encoding="utf-8")) if args.command == "draw" else []
    penalty = args.penalty if args.command == "draw" else 0.0
    with penalised(listed, penalty):
        poems = [
            generate_poem(model, first=p[0][0], form=len(p[0]), lines=4, seed=args.seed + i).lines
            for i, p in enumerate(prompts)
        ]
    label = f"{args.model or 'bundled'} stock penalty {penalty}"
    row = summary(label, poems, real, top=None)  # every stock phrase, for the list
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.command == "list":
        args.out.write_text(json.dumps([f for f, _, _ in row["stock"]], ensure_ascii=False), encoding="utf-8")
    else:
        args.out.write_text(json.dumps({"set": label, "poems": poems}, ensure_ascii=False), encoding="utf-8")
    top = ", ".join(f"{f} {s:.0%}" for f, s, _ in row["stock"][:8])
    print(f"{len(row['stock'])} stock phrases, in {row['with_stock']:.0%} of {len(poems)} poems: {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
