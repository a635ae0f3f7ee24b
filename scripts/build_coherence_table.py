"""Build ``tangpoem_hf/resources/coherence.safetensors``: which characters share a poem's lines.

    TANGPOEM_CORPUS=DIR python scripts/build_coherence_table.py [--chars 3000] [--rank 128] [--pseudo 5]

Counts, over the regulated poems (五绝, 七绝, 五律, 七律) of the training split only, how often two
characters stand in different lines of one poem, turns the counts into a shrunken PMI and keeps
the matrix's leading eigenpairs (see :mod:`tangpoem_hf.coherence`). Held-out poems are never read,
so the study's prompts and references stay unseen.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from tangpoem_hf.coherence import TABLE_PATH, cooccurrence, low_rank, save_table, shrunken_pmi
from tangpoem_hf.corpus import SPLIT_VERSION, build_splits
from tangpoem_hf.text import FORM_SHAPES, split_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    parser.add_argument("--chars", type=int, default=3000, help="the most frequent characters kept")
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--pseudo", type=float, default=5.0, help="pseudo-count a of the shrunken PMI")
    parser.add_argument("--out", default=str(TABLE_PATH))
    args = parser.parse_args()
    splits, _ = build_splits(args.corpus, simplified=True)
    poems = [split_lines(t) for t, f in zip(splits["train"]["text"], splits["train"]["form"]) if f in FORM_SHAPES]
    freq = Counter(ch for lines in poems for line in lines for ch in line)
    chars = "".join(ch for ch, _ in freq.most_common(args.chars))
    counts = cooccurrence(poems, chars)
    values, vectors, error = low_rank(shrunken_pmi(counts, args.pseudo), args.rank)
    covered = sum(freq[ch] for ch in chars) / sum(freq.values())
    meta = {
        "source": "chinese-poetry quantangshi, train split, regulated poems",
        "split_version": SPLIT_VERSION,
        "poems": str(len(poems)),
        "pseudo": str(args.pseudo),
        "relative_error": f"{error:.3f}",
    }
    save_table(Path(args.out), chars, values, vectors, meta)
    print(
        f"{len(poems)} poems, {len(chars)} characters ({covered:.1%} of their characters), rank {args.rank}: "
        f"relative error {error:.3f}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
