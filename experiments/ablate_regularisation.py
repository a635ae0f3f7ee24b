"""Which AWD-LSTM regularisers help the poem model? Each added in turn, at equal CPU time, side by side.

    TANGPOEM_CORPUS=DIR python experiments/ablate_regularisation.py --budget 1500 [--doc docs/reports/results.md]

Every arm continues the bundled model (2 × LSTM 512, trained 8,716 s on the legacy split) with the
control segment added (``tangpoem finetune --init-from bundled --add-control``), Adam at 5e-4,
batches of 64 × 64 tokens, fp32, one thread, for ``--budget`` seconds of training; all arms run at
once so they share the machine's load. Each keeps an averaged copy of its weights (``--average``),
so every run also measures averaged-weights evaluation against its raw weights. The arms add, in
order: DropConnect on the hidden-to-hidden weights, locked dropout with embedding dropout, then
AR/TAR. A run folder that exists is resumed. Then each best/ is scored from its own start state on
the test poems that neither the bundled model nor the run ever read, and the table replaces the
marked section of ``--doc``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

from doc_sections import write_section
from side_by_side import train_side_by_side

from tangpoem_hf.checkpointing import has_checkpoint
from tangpoem_hf.corpus import build_splits, never_trained_on
from tangpoem_hf.hub import read_training_info
from tangpoem_hf.modeling import TangPoemLSTM
from tangpoem_hf.scoring import token_losses

ROOT = Path(__file__).resolve().parents[1]
AVERAGE = "0.998"
MARK_START, MARK_END = "<!-- ablation table: experiments/ablate_regularisation.py -->", "<!-- end of ablation table -->"
ARMS = {  # cumulative: each arm is the one before plus one regulariser
    "current": ["--dropout", "0.3"],
    "weight-drop": ["--dropout", "0.3", "--weight-drop", "0.5"],
    "locked-embed": ["--dropout", "0.3", "--weight-drop", "0.5", "--locked-dropout", "--embed-drop", "0.1"],
    "ar-tar": ["--dropout", "0.3", "--weight-drop", "0.5", "--locked-dropout", "--embed-drop", "0.1", "--ar", "2",
               "--tar", "1"],
}  # fmt: skip


def train(runs: Path, budget: float, corpus: str | None) -> None:
    """All arms at once, one thread each; each resumes its folder if it has a checkpoint."""
    jobs = {}
    for name, regularisers in ARMS.items():
        out = runs / name
        args = ["--init-from", "bundled", "--add-control", "--out-dir", str(out), "--batch-size", "64"]
        args += ["--seq-len", "64", "--min-freq", "2", "--lr", "5e-4", "--average", AVERAGE, "--threads", "1"]
        args += ["--time-budget", str(budget), "--checkpoint-every", "100", "--no-progress", *regularisers]
        args += ["--corpus", corpus] if corpus else []
        if has_checkpoint(out / "checkpoints"):  # the same flags: --resume refuses any that changed
            args = ["--resume", "--out-dir", str(out), "--threads", "1", "--no-progress"]
        jobs[name] = args
    train_side_by_side(jobs, runs, allowed=(0, 130))  # 130: stopped with Ctrl-C after saving and validating


def measure(runs: Path, corpus: str | None) -> list[dict]:
    """Validation (raw and averaged weights, and with each poem's title and keywords) from the runs'
    logs; test perplexity of each best/ on the test poems no arm ever read."""
    rows = []
    splits, _ = build_splits(corpus)
    for name in ARMS:
        folder = runs / name / "best"
        info = read_training_info(folder)
        test = never_trained_on(splits, "test", info["split"])
        model = TangPoemLSTM.from_pretrained(folder)
        total, count = token_losses(model, test)
        last = [json.loads(line) for line in (runs / name / "train_log.jsonl").read_text().splitlines()]
        val = [r for r in last if "val_perplexity" in r][-1]
        steps = [r for r in last if "loss" in r]
        rows.append(
            {
                "arm": name,
                "steps": val["step"],
                "tokens_per_s": round(sum(r["tokens_per_s"] for r in steps) / len(steps)),
                "val_raw": val.get("val_perplexity_raw"),
                "val": val["val_perplexity"],
                "val_theme": val.get("val_perplexity_theme"),
                "test": round(math.exp(total / count), 3),
                "test_poems": len(test),
                "train_seconds": info["train_seconds"],
            }
        )
    return rows


def markdown(rows: list[dict], command: str) -> str:
    head = (
        "| arm (each adds to the one above) | steps | tokens/s | val, raw weights | val, averaged | "
        "val with title + keywords | test (averaged) |\n|---|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['arm']} | {r['steps']} | {r['tokens_per_s']} | {r['val_raw']:.2f} | {r['val']:.2f} | "
        f"{r['val_theme']:.2f} | {r['test']:.2f} |\n"
        for r in rows
    )
    return f"Measured with `{command}`; test on {rows[0]['test_poems']} poems no arm read.\n\n{head}{body}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=1500.0, help="seconds of training per arm [1500]")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "ablation")
    p.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    p.add_argument("--doc", type=Path, help="write the table into this markdown file")
    p.add_argument("--no-train", action="store_true", help="only measure the existing runs")
    args = p.parse_args(argv)
    args.runs.mkdir(parents=True, exist_ok=True)
    if not args.no_train:
        train(args.runs, args.budget, args.corpus)
    rows = measure(args.runs, args.corpus)
    (args.runs / "ablation.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    table = markdown(rows, "python " + shlex.join(["experiments/ablate_regularisation.py", *sys.argv[1:]]))
    print(table)
    if args.doc:
        write_section(args.doc, MARK_START, MARK_END, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
