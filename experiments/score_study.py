"""Which score should rank candidates? How well each one tells real held-out poems from ours.

    TANGPOEM_CORPUS=DIR python experiments/score_study.py [--per-form 150] [--model M]

No blind judgments exist yet (``experiments/judge_pairs.py`` prepares them), so this measures the best
proxy we have: for held-out real poems (validation + test) and generated poems of the same form
and first character, each candidate score's AUC at putting the real poem above the generated one
(0.5: no better than chance). Every score is computed by teacher forcing the text through the
model, exactly as the decoder scores a candidate while drawing it.
"""

from __future__ import annotations

import argparse
import random

import torch

from tangpoem_hf.constraints import stray_repeats
from tangpoem_hf.corpus import build_splits
from tangpoem_hf.decoding import generate_poems, score_lines, token_logprobs
from tangpoem_hf.modeling import load_model
from tangpoem_hf.options import PLAIN_SAMPLE
from tangpoem_hf.text import FORM_SHAPES, split_lines


def auc(real: list[float], fake: list[float]) -> float:
    """P(score of a real poem > score of a generated one), ties counting half."""
    wins = sum((r > f) + 0.5 * (r == f) for r in real for f in fake)
    return wins / (len(real) * len(fake))


def variants(model, lines: list[str]) -> dict[str, float]:
    chars, marks = token_logprobs(model, lines)
    n = len(chars)
    repeats = len(stray_repeats(lines))
    mean_chars = sum(chars) / n
    mean_all = (sum(chars) + sum(marks)) / (n + len(marks))
    return {
        "mean log p, characters": mean_chars,
        "mean log p, characters + ，。<eos>": mean_all,
        "characters − 0.5 × stray repeats": mean_chars - 0.5 * repeats,
        "characters − 1 × stray repeats": mean_chars - repeats,
        "chosen: score_lines (all tokens − 1 × repeats)": score_lines(model, lines),
        "stray repeats only (negated)": -float(repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-form", type=int, default=150)
    parser.add_argument("--model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    splits, _ = build_splits(None)
    rng = random.Random(args.seed)
    settings = {
        "unconstrained": PLAIN_SAMPLE,
        "rhyme + relaxed tone": {**PLAIN_SAMPLE, "rhyme": True, "tone": "relaxed"},
    }
    for name, extra in settings.items():
        real_scores: dict[str, list[float]] = {}
        fake_scores: dict[str, list[float]] = {}
        for form, (size, count) in FORM_SHAPES.items():
            texts = [
                t
                for split in ("validation", "test")
                for t, f in zip(splits[split]["text"], splits[split]["form"])
                if f == form and t[0] in model.tokenizer
            ]
            rng.shuffle(texts)
            for i, text in enumerate(texts[: args.per_form]):
                lines = split_lines(text)
                if any(ch not in model.tokenizer for ch in "".join(lines)):
                    continue
                fake = generate_poems(model, 1, first=text[0], form=size, lines=count, seed=i, **extra)[0]
                for target, ls in ((real_scores, lines), (fake_scores, fake.lines)):
                    for key, value in variants(model, ls).items():
                        target.setdefault(key, []).append(value)
        n = len(next(iter(real_scores.values())))
        print(f"\n{name}: {n} real held-out poems against {n} generated (same form and first character)")
        for key in real_scores:
            print(f"  AUC {auc(real_scores[key], fake_scores[key]):.3f}  {key}")


if __name__ == "__main__":
    main()
