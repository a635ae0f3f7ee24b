"""Blind pairwise judging: our poems beside real held-out poems, and a judge's answers scored.

Write pairs (the judge's file and a hidden key, in separate files):

    TANGPOEM_CORPUS=DIR python experiments/judge_pairs.py write --out judging/default --num 50 --form 七绝

Each pair is one real poem of the held-out splits (validation + test, never trained on) and one
poem the model wrote for the same form and first character, in a random order per pair. The
judge sees ``pairs.md`` (or ``pairs.json``), told only that two authors wrote the poems, and
answers which of each pair is the better poem, optionally with a reason::

    {"1": {"better": "A", "reason": "line 3 does not parse in B"}, "2": "B", ...}

Score the answers against the key (``key.json``, kept from the judge):

    python experiments/judge_pairs.py score --key judging/default/key.json --answers answers.json

``--settings`` is ``default`` (the one default every interface draws with), ``app`` (the app's
defaults before issue 23: rhyme, relaxed tone, no repeats, 4 candidates), ``plain`` (the same without
candidates and no-repeat: one sample), ``free`` (one sample, no rule) or a JSON object of
``generate_poem`` keyword arguments. Against real poems a weak model loses every pair whatever its
settings, so ``--versus OTHER`` pits two settings against each other instead: each real poem only
gives the form and first character, and its place is taken by a poem written with ``OTHER`` (the
key's "generated" names the ``--settings`` poem, so the score is its win rate against ``OTHER``).
``--versus-model M`` does the same with another model's poems (``--versus`` settings, or the same
settings): a new model against the one it replaces.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tangpoem_hf.corpus import build_splits
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.modeling import TangPoemLSTM, load_model
from tangpoem_hf.options import PLAIN_SAMPLE
from tangpoem_hf.text import FORM_SHAPES, split_lines

PRESETS: dict[str, dict[str, Any]] = {
    # The settings docs/reports/judging.md judged: the app's defaults before issue 23, and one sample
    # (both before the one-season rule).
    "app": {
        "rhyme": True,
        "tone": "relaxed",
        "no_repeat": True,
        "one_season": False,
        "search": "poem",
        "candidates": 4,
        "temperature": 0.8,
    },
    "plain": {
        "rhyme": True,
        "tone": "relaxed",
        "no_repeat": False,
        "one_season": False,
        "search": "poem",
        "candidates": 1,
        "temperature": 0.8,
    },
    "free": PLAIN_SAMPLE,  # one free sample, no rule (what --settings '{}' meant before there was one default)
    "default": {},  # the one default of every interface (tangpoem_hf.options.GenerationOptions)
}
INSTRUCTIONS = (
    "Each pair holds two Tang-style poems by two different authors. For every pair, say which poem "
    "is the better one (A or B), and if you can, why in a few words."
)


def settings_of(value: str) -> dict[str, Any]:
    """A preset name or a JSON object of generation keyword arguments."""
    if value in PRESETS:
        return dict(PRESETS[value])
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise SystemExit(f"--settings must be {' or '.join(PRESETS)} or a JSON object, not {value!r}.")
    return parsed


def make_pairs(
    model: TangPoemLSTM,
    heldout: list[str],
    form: str,
    num: int,
    settings: Mapping[str, Any],
    seed: int = 0,
    versus: Mapping[str, Any] | None = None,
    versus_model: TangPoemLSTM | None = None,
) -> tuple[list[dict], list[dict]]:
    """(pairs for the judge, the key): up to ``num`` real poems of ``form``, each beside a generated
    poem with the same first character, in a random order per pair; with ``versus``, the real poem
    is replaced by one generated with those settings (same first character and seed), written by
    ``versus_model`` when one is given (two models compared with the same settings)."""
    if versus_model is not None and versus is None:
        versus = settings
    size, count = FORM_SHAPES[form]
    rng = random.Random(seed)
    real = [t for t in heldout if all(ch in model.tokenizer for ch in "".join(split_lines(t)))]
    rng.shuffle(real)
    pairs, key = [], []
    for k, text in enumerate(real[:num], start=1):
        lines = split_lines(text)
        shape = {"first": lines[0][0], "form": size, "lines": count, "seed": seed * 100_003 + k}
        ours = generate_poem(model, **shape, **settings)
        other = generate_poem(versus_model or model, **shape, **versus).text if versus is not None else _couplets(lines)
        generated_first = rng.random() < 0.5
        a, b = (ours.text, other) if generated_first else (other, ours.text)
        pairs.append({"pair": k, "A": a, "B": b})
        key.append({"pair": k, "generated": "A" if generated_first else "B", "form": form, "seed": ours.seed})
    return pairs, key


def _couplets(lines: list[str]) -> str:
    return "\n".join(
        "".join(lines[i] + ("，" if j == 0 else "。") for j, i in enumerate(range(r, min(r + 2, len(lines)))))
        for r in range(0, len(lines), 2)
    )


def pairs_markdown(pairs: list[dict], title: str = "Which poem is better?", instructions: str = INSTRUCTIONS) -> str:
    """What a judge reads: the instructions, then each pair's A and B, lines kept apart in Markdown."""
    out = [f"# {title}", "", instructions, ""]
    for p in pairs:
        out += [f"## Pair {p['pair']}", "", "**A**", "", *p["A"].split("\n"), "", "**B**", "", *p["B"].split("\n"), ""]
    return "\n".join(line if not line or line.startswith(("#", "**")) else line + "  " for line in out)


def write(out: Path, pairs: list[dict], key: list[dict], settings: Mapping[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "pairs.json").write_text(
        json.dumps({"instructions": INSTRUCTIONS, "pairs": pairs}, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    (out / "pairs.md").write_text(pairs_markdown(pairs), encoding="utf-8")
    (out / "key.json").write_text(
        json.dumps({"settings": dict(settings), "key": key}, ensure_ascii=False, indent=2), encoding="utf-8"
    )


def merge(folders: list[Path], seed: int = 0) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Several written folders as one judging set: pairs shuffled and renumbered, keys kept in step."""
    rows, settings = [], {}
    for folder in folders:
        pairs = json.loads((folder / "pairs.json").read_text(encoding="utf-8"))["pairs"]
        key = json.loads((folder / "key.json").read_text(encoding="utf-8"))
        settings = key["settings"]
        rows += list(zip(pairs, key["key"]))
    random.Random(seed).shuffle(rows)
    pairs = [{**p, "pair": i} for i, (p, _) in enumerate(rows, start=1)]
    return pairs, [{**k, "pair": i} for i, (_, k) in enumerate(rows, start=1)], settings


def score_answers(answers: Mapping[str, Any], key: list[dict]) -> dict[str, Any]:
    """How often the judge preferred the generated poem, with the pairs answered and the reasons."""
    wins, judged, reasons, skipped = 0, 0, [], []
    for row in key:
        answer = answers.get(str(row["pair"]))
        better = answer.get("better") if isinstance(answer, Mapping) else answer
        if better not in ("A", "B"):
            skipped.append(row["pair"])
            continue
        judged += 1
        won = better == row["generated"]
        wins += won
        if isinstance(answer, Mapping) and answer.get("reason"):
            reasons.append({"pair": row["pair"], "generated_won": won, "reason": answer["reason"]})
    return {
        "pairs": judged,
        "generated_wins": wins,
        "win_rate": wins / judged if judged else float("nan"),
        "unanswered": skipped,
        "reasons": reasons,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write pairs.json, pairs.md and the hidden key.json")
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--settings", default="default", help=f"{', '.join(PRESETS)}, or a JSON object [default]")
    w.add_argument("--num", type=int, default=50)
    w.add_argument("--form", choices=list(FORM_SHAPES), default="七绝")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--versus", help="judge against poems written with these settings instead of real ones")
    w.add_argument("--model", help="model folder or Hub repo id (default: the bundled model)")
    w.add_argument("--versus-model", help="judge against poems this model writes (with --versus or the same settings)")
    w.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    m = sub.add_parser("merge", help="merge written folders (e.g. two forms) into one shuffled judging set")
    m.add_argument("folders", type=Path, nargs="+")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score", help="score a judge's answers against the key")
    s.add_argument("--key", type=Path, required=True)
    s.add_argument("--answers", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "score":
        key = json.loads(args.key.read_text(encoding="utf-8"))
        answers = json.loads(args.answers.read_text(encoding="utf-8"))
        print(
            json.dumps(
                {"settings": key["settings"], **score_answers(answers, key["key"])}, ensure_ascii=False, indent=2
            )
        )
        return 0
    if args.command == "merge":
        pairs, key, settings = merge(args.folders, args.seed)
        write(args.out, pairs, key, settings)
        print(f"wrote {len(pairs)} pairs to {args.out}/pairs.md and pairs.json; the key is {args.out}/key.json")
        return 0
    settings = settings_of(args.settings)
    model = load_model(args.model)
    splits, _ = build_splits(args.corpus, simplified=model.tokenizer.simplified)
    heldout = [
        t
        for split in ("validation", "test")
        for t, f in zip(splits[split]["text"], splits[split]["form"])
        if f == args.form
    ]
    versus = settings_of(args.versus) if args.versus else None
    other = load_model(args.versus_model) if args.versus_model else None
    pairs, key = make_pairs(model, heldout, args.form, args.num, settings, args.seed, versus, other)
    if other is not None:
        settings = {**settings, "versus": versus or settings, "versus_model": args.versus_model}
    elif versus is not None:
        settings = {**settings, "versus": versus}
    write(args.out, pairs, key, {**settings, "model": args.model or "bundled"})  # which model "generated" names
    print(f"wrote {len(pairs)} pairs to {args.out}/pairs.md and pairs.json; the key is {args.out}/key.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
