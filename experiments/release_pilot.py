"""The release-v5 pilot (issue 21): each candidate recipe trained on Tang + Song for the same short
budget, side by side, one thread each, to measure its speed and catch its bugs.

    tangpoem data pack --dynasties tang,song --out data/packed      # once: the corpus as uint16 ids
    nice -n 10 python experiments/release_pilot.py --corpus data/packed --budget 1800 --doc docs/reports/results.md

A short pilot cannot show what more data is worth (every arm is still in its first pass over the
poems), so it records what it can: tokens/s, steps, and Tang validation perplexity from each model's
start state. The arms (all 512 wide, dropout 0.3, the control segment, batch 64 × 64, Adam, bf16
auto, ``--min-freq 2``):

- ``today``: the recipe of the bundled model, from scratch: 2 LSTM layers, untied;
- ``tied``: the same with tied input and output embeddings (nanoGPT does this);
- ``tied-3-layers``: the larger variant, a third layer (tied);
- ``warm-v4``: the bundled v4 continued (``--init-from bundled``: Song's characters appended to its
  vocabulary, the fine-tuning rate 5e-4), against ``today`` from scratch.

Rerun the command after a kill: a run folder with a checkpoint resumes, a finished one is only read.
Every arm's best/ is then scored on the same poems: the Tang validation poems that neither v4's
legacy split nor today's trained on (a warm-started arm validates on those alone while training, a
scratch arm on all), and the table replaces the marked section of ``--doc``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
from pathlib import Path

from doc_sections import write_section
from side_by_side import train_side_by_side

from tangpoem_hf.corpus import LEGACY_SPLIT, SPLIT_VERSION, build_splits, never_trained_on
from tangpoem_hf.finetune import load_base
from tangpoem_hf.hub import read_training_info
from tangpoem_hf.modeling import TangPoemLSTM
from tangpoem_hf.scoring import token_losses

ROOT = Path(__file__).resolve().parents[1]
MARK_START, MARK_END = "<!-- pilot table: experiments/release_pilot.py -->", "<!-- end of pilot table -->"
COMMON_SPLIT = f"{LEGACY_SPLIT}+{SPLIT_VERSION}"  # the poems neither v4 nor a new run trained on
ARMS = {  # name → (what it is, its own flags)
    "today": ("2 × LSTM, untied, from scratch", ["--num-layers", "2"]),
    "tied": ("2 × LSTM, tied, from scratch", ["--num-layers", "2", "--tie-weights"]),
    "tied-3-layers": ("3 × LSTM, tied, from scratch", ["--num-layers", "3", "--tie-weights"]),
    "warm-v4": ("2 × LSTM, untied, v4 continued", ["--init-from", "{init_from}"]),
}
SKIPPED_STEPS = 10  # the first steps (allocation, first-touch) are left out of tokens/s


def arm_args(name: str, args: argparse.Namespace) -> list[str]:
    """The ``tangpoem train`` flags of one arm; a run folder with a checkpoint resumes with its own."""
    out = args.runs / name
    if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
        return ["--resume", "--out-dir", str(out), "--threads", "1", "--no-progress"]
    own = [a.format(init_from=args.init_from) for a in ARMS[name][1]]
    common = ["--corpus", args.corpus, "--dynasties", "tang,song", "--out-dir", str(out), "--threads", "1"]
    common += ["--embedding-dim", str(args.width), "--hidden-size", str(args.width), "--dropout", "0.3"]
    common += ["--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--min-freq", "2"]
    common += ["--time-budget", str(args.budget), "--checkpoint-every", str(args.checkpoint_every), "--no-progress"]
    return common + own


def train(args: argparse.Namespace) -> None:
    """Every unfinished arm at once, one thread each, so that all share the machine's load."""
    jobs = {name: arm_args(name, args) for name in args.arms if not (args.runs / name / "summary.json").exists()}
    if jobs:
        train_side_by_side(jobs, args.runs, allowed=(0, 130))  # 130: stopped with Ctrl-C after a checkpoint


def _scored(model: TangPoemLSTM, texts: list[str]) -> float:
    total, count = token_losses(model, texts)
    return math.exp(total / count)


def measure(args: argparse.Namespace) -> list[dict]:
    """Per arm: steps, tokens/s, its own last validations, and its best/ on the common validation poems."""
    splits, _ = build_splits(args.corpus)
    common = never_trained_on(splits, "validation", COMMON_SPLIT)
    rows = [{"arm": "v4 as bundled", "what": "no training", "val_common": _scored(load_base(args.init_from), common)}]
    for name in args.arms:
        log = [json.loads(line) for line in (args.runs / name / "train_log.jsonl").read_text().splitlines()]
        steps = [r for r in log if "loss" in r]
        val = [r for r in log if "val_perplexity" in r][-1]
        info = read_training_info(args.runs / name / "best")
        model = TangPoemLSTM.from_pretrained(args.runs / name / "best")
        rows.append(
            {
                "arm": name,
                "what": ARMS[name][0],
                "steps": val["step"],
                "train_seconds": info["train_seconds"],
                "tokens_per_s": statistics.mean(r["tokens_per_s"] for r in steps[SKIPPED_STEPS:] or steps),
                "val_own": val["val_perplexity"],
                "song_val": val.get("song_validation_perplexity"),
                "val_common": _scored(model, common),
                "parameters": sum(p.numel() for p in model.parameters()),
                "bf16": info.get("bf16_resolved"),
            }
        )
    for row in rows:
        row["common_poems"] = len(common)
    return rows


def _cell(row: dict, key: str, fmt: str) -> str:
    return "–" if row.get(key) is None else format(row[key], fmt)


def markdown(rows: list[dict], command: str) -> str:
    """The pilot table: one row per arm, the untrained v4 first as the reference."""
    head = (
        "| arm | what | parameters | steps | tokens/s (1 thread) | Tang val (own set) | Song val | "
        "Tang val (common set) |\n|---|---|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['arm']} | {r['what']} | {_cell(r, 'parameters', ',')} | {_cell(r, 'steps', 'd')} | "
        f"{_cell(r, 'tokens_per_s', '.0f')} | {_cell(r, 'val_own', '.2f')} | {_cell(r, 'song_val', '.2f')} | "
        f"{r['val_common']:.2f} |\n"
        for r in rows
    )
    return (
        f"Measured with `{command}`. The common set: the {rows[0]['common_poems']} Tang validation poems that "
        "neither v4 nor any arm trained on, each from the model's own start state; Song val: up to 1,000 poems "
        "of song_validation.\n\n" + head + body
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, help="a packed corpus (tangpoem data pack) or a chinese-poetry folder")
    p.add_argument("--budget", type=float, default=1800.0, help="seconds of training per arm [1800]")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "pilot", help="one run folder per arm")
    p.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(ARMS), help="which arms [all]")
    p.add_argument("--init-from", default="bundled", help="the warm start's base [bundled: v4]")
    p.add_argument("--width", type=int, default=512, help="embedding and hidden size [512]")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints [200]")
    p.add_argument("--doc", type=Path, help="write the table into this markdown file (docs/reports/results.md)")
    p.add_argument("--no-train", action="store_true", help="only measure the finished runs")
    args = p.parse_args(argv)
    args.runs.mkdir(parents=True, exist_ok=True)
    if not args.no_train:
        train(args)
    rows = measure(args)
    table = markdown(
        rows, "python experiments/release_pilot.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    )
    print(table)
    (args.runs / "pilot.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    if args.doc:
        write_section(args.doc, MARK_START, MARK_END, table, heading="## Release v5 pilot (issue 21)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
