"""Guard for speed work: a change to the sampler must not change any poem.

    python benchmarks/same_poems.py --record before.json   # before the change
    python benchmarks/same_poems.py --check before.json    # after it: every poem byte-identical

Covers the line-search default (issue 23) over ``--seeds`` seeds × forms 5/7 × 4/8 lines, with
keywords, an acrostic, a first character, a batch (``num``), the server path, and the plain and
whole-poem-candidates samplers. Each poem is recorded with its notes, its score (``repr``, so
exactly) and its other candidates.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from tangpoem_hf.decoding import Poem, generate_poem, generate_poems
from tangpoem_hf.modeling import load_model
from tangpoem_hf.options import PLAIN_SAMPLE
from tangpoem_hf.serving import PoemServer

DEFAULT = {
    "search": "lines",
    "beam": 4,
    "line_candidates": 4,
    "temperature": 0.5,
    "top_p": 0.9,
    "rhyme": True,
    "tone": "relaxed",
    "no_repeat": True,
}


def record(poem: Poem) -> dict:
    return {
        "text": poem.text,
        "notes": poem.notes,
        "score": repr(poem.score),
        "others": [[p.text, p.notes, repr(p.score)] for p in poem.others],
    }


def requests(seeds: int) -> list[tuple[str, dict]]:
    """(name, generate_poem keyword arguments) for every poem the check draws."""
    out = []
    for seed in range(seeds):
        for form in (5, 7):
            for lines in (4, 8):
                out.append(
                    (f"default {form}x{lines} seed {seed}", {**DEFAULT, "form": form, "lines": lines, "seed": seed})
                )
    for seed in range(seeds // 3):
        out.append(
            (f"keywords seed {seed}", {**DEFAULT, "first": "月", "form": 5, "keywords": "明月 故乡", "seed": seed})
        )
        out.append((f"keywords7 seed {seed}", {**DEFAULT, "form": 7, "keywords": "春风", "seed": seed}))
        out.append((f"acrostic seed {seed}", {**DEFAULT, "acrostic": "春夏秋冬", "form": 7, "seed": seed}))
        out.append((f"first seed {seed}", {**DEFAULT, "first": "山", "form": 7, "seed": seed}))
        out.append((f"plain seed {seed}", {**PLAIN_SAMPLE, "first": "山", "form": 7, "seed": seed}))
        whole = {**PLAIN_SAMPLE, "candidates": 4, "no_repeat": True, "rhyme": True}  # whole-poem candidates
        out.append((f"candidates seed {seed}", {**whole, "form": 5, "seed": seed}))
        out.append((f"topk seed {seed}", {**DEFAULT, "form": 5, "top_k": 20, "top_p": 1.0, "seed": seed}))
    return out


def draw(seeds: int) -> dict[str, dict]:
    model = load_model()
    out = {name: record(generate_poem(model, **kwargs)) for name, kwargs in requests(seeds)}
    for i, p in enumerate(generate_poems(model, num=3, **{**DEFAULT, "form": 7, "seed": 40})):
        out[f"batch {i}"] = record(p)
    server = PoemServer(model)
    try:
        for seed in range(3):
            *_, last = server.stream(**{**DEFAULT, "form": 7, "seed": seed})
            out[f"served seed {seed}"] = record(last)
    finally:
        server.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", help="write the poems to this JSON file")
    mode.add_argument("--check", help="compare the poems with this JSON file")
    parser.add_argument("--seeds", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    poems = draw(args.seeds)
    print(f"{len(poems)} poems in {time.perf_counter() - start:.0f}s")
    if args.record:
        with open(args.record, "w", encoding="utf-8") as f:
            json.dump(poems, f, ensure_ascii=False, indent=1)
        return
    with open(args.check, encoding="utf-8") as f:
        before = json.load(f)
    differ = [name for name in before if poems.get(name) != before[name]]
    for name in differ[:10]:
        print(f"DIFFERS {name}:\n  before {before[name]}\n  after  {poems.get(name)}")
    print(f"{len(before) - len(differ)} of {len(before)} poems identical")
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
