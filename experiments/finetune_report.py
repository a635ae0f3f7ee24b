"""Fine-tune the bundled model on one poet and write ``docs/reports/finetune.md`` with before/after figures.

    nice -n 10 python experiments/finetune_report.py [--poet 李白] [--budget 600] [--corpus DIR]

The poet's poems in the corpus's train split are the fine-tuning data, and the poet's validation
split poems drive early stopping. The report gives perplexities before and after on the poet's
held-out poems (validation + test splits, and the test split alone, which nothing was chosen on)
and on the whole test split (how much general ability was given up), plus sample poems from both
models with the same prompts and seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from tangpoem_hf import TangPoemLSTM
from tangpoem_hf.corpus import build_splits, corpus_location, never_trained_on
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.errors import TangPoemError
from tangpoem_hf.finetune import BUNDLED, FinetuneOptions, base_split_version, finetune, load_base
from tangpoem_hf.finetune_data import filter_splits
from tangpoem_hf.options import PLAIN_SAMPLE
from tangpoem_hf.scoring import perplexity
from tangpoem_hf.text import split_lines
from tangpoem_hf.train_config import TrainConfig

REPO = Path(__file__).resolve().parent.parent
RUN_INFO = "report_run.json"  # the finished run's summary, command and wall time, for --reuse-run
HELD_OUT = ("validation", "test")
GOAL_POET_DROP = 0.15
GOAL_GENERAL_RISE = 0.05
# How the settings of the committed docs/reports/finetune.md were chosen: short trials from the same bundled
# model, judged only on 李白's validation poems and a third of the general validation split.
TUNING_NOTES = """How the settings were chosen (on 2026-11-27, with the bundled model of that day on the split by
poem id, so the percentages are of their time): short trials from one base, judged only on 李白's validation
poems and a third of the general **validation** split (never the test split), all with adam, batch 32 × 64, bf16:

| trial | poet validation | general validation |
| --- | ---: | ---: |
| no replay, lr 5e-4 constant, 30 steps | −14.4% | +8.5% |
| no replay, lr 5e-4 constant, 80 steps | −19.3% | +13.5% |
| replay 1, lr 5e-4 cosine over 120 steps | −13.0% | +2.3% |
| replay 1, lr 5e-4 cosine over 250 steps | −15.6% | +5.8% |
| replay 1, lr 1e-3 cosine over 150 steps | −16.4% | +6.5% |
| replay 1, frozen embedding, lr 7e-4 cosine over 200 steps | −15.4% | +6.2% |
| replay 2, lr 5e-4 constant, 200 steps | −14.5% | +5.3% |
| **replay 1.5, lr 7e-4 cosine over 250 steps** (used here) | −15.0% | +3.9% |

Without replay the poet's gain costs general perplexity about twice as fast, so mixing other poems
in (`--replay`) is the lever that keeps the general loss near the 5% line; the trade-off is tight either way."""

# (description, generate_poem kwargs); the same prompts and seeds for both models.
SAMPLES = [
    ("五言绝句，首字「月」", {"first": "月", "form": 5, "lines": 4}),
    ("七言绝句，首字「酒」", {"first": "酒", "form": 7, "lines": 4}),
    ("七言绝句，首字「山」", {"first": "山", "form": 7, "lines": 4}),
    ("五言律诗，首字「天」", {"first": "天", "form": 5, "lines": 8}),
]
SAMPLE_SEEDS = (0, 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=BUNDLED, help="base model: 'bundled', a folder or a Hub id [bundled]")
    p.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    p.add_argument("--poet", default="李白", help="the poet to adapt to [李白]")
    p.add_argument("--budget", type=float, default=600.0, help="seconds of training (evaluation excluded) [600]")
    p.add_argument("--max-steps", type=int, default=None, help="steps (the cosine schedule spans them) [budget only]")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--lr", type=float, default=5e-4, help="adam learning rate [5e-4]")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=50, help="steps between validations on the poet's poems [50]")
    p.add_argument("--patience", type=int, default=4, help="validations without progress before stopping [4]")
    p.add_argument("--freeze-embedding", action="store_true")
    p.add_argument("--replay", type=float, default=0.0, help="other train-split poems mixed in per poet poem [0]")
    p.add_argument("--new-chars", choices=("grow", "unk"), default="grow")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the output layer")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads [2]")
    p.add_argument("--out-dir", default="runs/finetune-report", help="the fine-tuning run folder (replaced)")
    p.add_argument("--output", default=str(REPO / "docs" / "reports" / "finetune.md"))
    p.add_argument(
        "--reuse-run", action="store_true", help="report on the finished run in --out-dir instead of training again"
    )
    return p.parse_args(argv)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def line_overlap(texts: list[str], seen: set[str]) -> float:
    """Share of the poems' lines that also occur, verbatim, in some training poem."""
    lines = [line for text in texts for line in split_lines(text)]
    return sum(line in seen for line in lines) / max(len(lines), 1)


def recall_note(overlap: dict[str, float]) -> str:
    """What the verbatim overlap of held-out lines with training poems means for the figures."""
    if overlap["poet_heldout"] == 0:
        return (
            "No held-out line occurs verbatim in a training poem (the split keeps copies together), so the "
            "gain is style, not recall."
        )
    return (
        f"The corpus repeats many poems in variant forms: {overlap['poet_heldout']:.0%} of the poet's held-out "
        f"lines also occur verbatim in some training poem (against {overlap['general_test']:.0%} for the general "
        'test split), so part of the poet\'s gain is recall of those lines; the "no line found" row measures '
        "style alone."
    )


def measure(model: TangPoemLSTM, sets: dict[str, list[str]]) -> dict[str, float]:
    return {name: perplexity(model, texts) for name, texts in sets.items()}


def samples(model: TangPoemLSTM) -> list[tuple[str, str]]:
    out = []
    for description, kwargs in SAMPLES:
        for seed in SAMPLE_SEEDS:
            out.append((f"{description} · seed {seed}", generate_poem(model, seed=seed, **PLAIN_SAMPLE, **kwargs).text))
    return out


def quote(text: str) -> str:
    return "\n".join(f"> {row}  " for row in text.splitlines())


def write_report(path: Path, ctx: dict) -> None:
    before, after = ctx["before"], ctx["after"]
    labels = {
        "poet_heldout": f"{ctx['poet']}: held-out poems (validation + test splits)",
        "poet_test": f"{ctx['poet']}: test split only",
        "poet_val": f"{ctx['poet']}: validation split only (early stopping used it)",
        "poet_novel": f"{ctx['poet']}: held-out poems with no line found verbatim in the train split",
        "general_test": "all poets: test split",
    }
    rows = []
    for key, label in labels.items():
        change = after[key] / before[key] - 1
        count, chars = ctx["counts"][key], ctx["chars"][key]
        rows.append(f"| {label} | {count} | {chars:,} | {before[key]:.2f} | {after[key]:.2f} | {change:+.1%} |")
    poet_drop = 1 - after["poet_heldout"] / before["poet_heldout"]
    general_rise = after["general_test"] / before["general_test"] - 1
    ok_poet, ok_general = poet_drop >= GOAL_POET_DROP, general_rise <= GOAL_GENERAL_RISE
    summary = ctx["summary"]
    history = "\n".join(f"| {h['step']} | {h['val_perplexity']:.2f} |" for h in ctx["history"])
    sample_rows = []
    for (desc, base_text), (_, tuned_text) in zip(ctx["samples_before"], ctx["samples_after"]):
        sample_rows += [f"**{desc}**", "", "base:", "", quote(base_text), "", "fine-tuned:", "", quote(tuned_text), ""]
    if summary.get("stopped_early"):
        stop = "early stopping"
    elif ctx["max_steps"] and summary["steps"] >= ctx["max_steps"]:
        stop = "reaching --max-steps"
    else:
        stop = "the time budget"
    text = f"""# Fine-tuning the bundled model on {ctx["poet"]}

Written by `experiments/finetune_report.py` on {ctx["date"]}; rerun with

```
{ctx["command"]}
```

## Setup

- Base: {ctx["base"]} ({ctx["base_params"]:,} parameters, {ctx["base_vocab"]:,} characters).
- Fine-tuning data: {ctx["poet"]}'s poems in the corpus's **train** split
  ({ctx["counts"]["poet_train"]} poems){ctx["replay_text"]};
  early stopping watched the validation perplexity of {ctx["poet"]}'s validation-split poems
  ({ctx["counts"]["poet_val"]} poems). Nothing was chosen on the test split.
- Vocabulary: `--new-chars {ctx["new_chars"]}`; {summary["new_characters"]} new characters
  ({ctx["new_characters"] or "none"}), each starting as `<unk>` (see `tangpoem_hf/finetune.py`).
  The base scores those characters as `<unk>`, the fine-tuned model as themselves, which
  can only make the fine-tuned model's figures worse.
- Training: adam, lr {ctx["lr"]} ({ctx["schedule"]}{ctx["steps_text"]}),
  batch {ctx["batch_size"]} × {ctx["seq_len"]} tokens, validation every
  {ctx["eval_every"]} steps, patience {ctx["patience"]}, freeze embedding: {ctx["freeze"]}, bf16: {ctx["bf16"]};
  budget {ctx["budget"]:.0f} s of training on this CPU ({ctx["cpu"]}, torch threads: {ctx["threads"]},
  shared with other jobs). It ran {summary["steps"]} steps in {summary["train_seconds"]:.0f} s of training
  ({ctx["wall"]:.0f} s wall clock with evaluation) and ended by {stop}; `best/` is the step with the lowest
  validation perplexity.

## Perplexity (per character, lower is better)

| poems | count | characters | base | fine-tuned | change |
| --- | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

The poet's held-out set is small ({ctx["counts"]["poet_heldout"]} poems), so its figures carry sampling noise;
the test-split-only row is the cleanest, since early stopping looked at the validation poems.
{recall_note(ctx["overlap"])}

Goals: the poet's held-out perplexity drops by ≥ {GOAL_POET_DROP:.0%} — **{poet_drop:.2%} drop,
{"met" if ok_poet else "not met"}**; the general test perplexity rises by ≤ {GOAL_GENERAL_RISE:.0%} —
**{general_rise:+.2%}, {"met" if ok_general else "not met"}**.

{TUNING_NOTES}

Validation perplexity on {ctx["poet"]}'s validation poems during fine-tuning (before: {ctx["base_val"]:.2f}):

| step | validation perplexity |
| ---: | ---: |
{history}

## Sample poems (same prompts and seeds; temperature 0.8, top-p 0.9)

{chr(10).join(sample_rows)}
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        corpus = corpus_location(args.corpus)
        base = load_base(args.base)
        splits, _ = build_splits(corpus, simplified=base.tokenizer.simplified)
        poet = filter_splits(splits, authors=[args.poet])
        # Held out means never read: a base trained on an older split read some of today's held-out poems.
        unread = {name: set(never_trained_on(splits, name, base_split_version(args.base))) for name in HELD_OUT}
        poet_val, poet_test = ([t for t in poet[name]["text"] if t in unread[name]] for name in HELD_OUT)
        heldout = poet_val + poet_test
        seen = {line for text in splits["train"]["text"] for line in split_lines(text)}
        sets = {
            "poet_heldout": heldout,
            "poet_test": poet_test,
            "poet_val": poet_val,
            "poet_novel": [t for t in heldout if not any(line in seen for line in split_lines(t))],
            "general_test": [t for t in splits["test"]["text"] if t in unread["test"]],
        }
        overlap = {name: line_overlap(sets[name], seen) for name in ("poet_heldout", "general_test")}
        before = measure(base, sets)
        print("before:", json.dumps(before))
        out = Path(args.out_dir)
        reuse = args.reuse_run and (out / RUN_INFO).exists() and (out / "best").is_dir()
        if not reuse and (out / "train_config.json").exists():
            shutil.rmtree(out)  # a run folder of an earlier report
        cfg = TrainConfig(
            corpus=corpus,
            out_dir=str(out),
            lr=args.lr,
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            epochs=1000,
            max_steps=args.max_steps,
            lr_schedule=args.lr_schedule,
            time_budget=args.budget,
            eval_every=args.eval_every,
            patience=args.patience,
            checkpoint_every=10_000,
            freeze_embedding=args.freeze_embedding,
            bf16=args.bf16,
            threads=args.threads,
            progress=False,
        )
        opts = FinetuneOptions(init_from=args.base, authors=[args.poet], new_chars=args.new_chars, replay=args.replay)
        if reuse:
            run = json.loads((out / RUN_INFO).read_text(encoding="utf-8"))
            summary, command, wall = run["summary"], run["command"], run["wall"]
        else:
            summary = finetune(cfg, opts)
            command = "nice -n 10 python experiments/finetune_report.py " + " ".join(argv or sys.argv[1:])
            wall = time.perf_counter() - start
            run = {"summary": summary, "command": command, "wall": wall}
            (out / RUN_INFO).write_text(json.dumps(run, indent=2, ensure_ascii=False), encoding="utf-8")
        tuned = TangPoemLSTM.from_pretrained(out / "best")
        after = measure(tuned, sets)
        print("after:", json.dumps(after))
    except TangPoemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = json.loads((out / "best" / "training.json").read_text(encoding="utf-8"))["train_config"]["extra"]
    history = [json.loads(line) for line in (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    counts = {name: len(texts) for name, texts in sets.items()}
    counts["poet_train"] = len(poet["train"])
    chars = {name: sum(len(t) for t in texts) for name, texts in sets.items()}
    base_label = "the bundled model (`tangpoem_hf/pretrained/`)" if args.base == BUNDLED else f"`{args.base}`"
    ctx = {
        "poet": args.poet,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "base": base_label,
        "base_params": sum(p.numel() for p in base.parameters()),
        "base_vocab": len(base.tokenizer),
        "counts": counts,
        "chars": chars,
        "overlap": overlap,
        "before": before,
        "after": after,
        "summary": summary,
        "history": [h for h in history if "val_perplexity" in h],
        "base_val": info["finetune"]["base_val_perplexity"],
        "new_chars": args.new_chars,
        "new_characters": info["finetune"]["new_characters"],
        "lr": args.lr,
        "schedule": args.lr_schedule,
        "steps_text": f" over {args.max_steps} steps" if args.max_steps else "",
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "eval_every": args.eval_every,
        "patience": args.patience,
        "freeze": args.freeze_embedding,
        "replay_text": (
            f", mixed with {summary['train_poems'] - counts['poet_train']} other poems of the train split "
            f"(`--replay {args.replay:g}`, chosen by a hash of their id) so the general style is not forgotten"
            if args.replay
            else ""
        ),
        "bf16": args.bf16,
        "budget": args.budget,
        "threads": args.threads,
        "cpu": cpu_name(),
        "wall": wall,
        "samples_before": samples(base),
        "samples_after": samples(tuned),
    }
    write_report(Path(args.output), ctx)
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
