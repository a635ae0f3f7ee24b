"""Which start state should a poem begin from? The two ways to train for one, side by side.

    TANGPOEM_CORPUS=DIR python experiments/compare_start_states.py --steps 800 [--runs runs] \
        [--doc docs/reports/start-state.md]

- ``stored``: packed streams with the LSTM state carried from poem to poem (the project's recipe); the
  model stores the mean state at ``<bos>`` over 1,024 training poems and starts every poem there;
- ``learned``: one poem per row (rows of equal length batched together), each from a learned start
  state that is trained with the weights.

Both train the report's model (embedding 512 → LSTM 512 → Linear, reading the poem alone with no
control segment, Adam, cosine over ``--steps``, batches of at most 64 × 64 tokens) in fp32, side by
side with one thread each, so they see the same machine load and about the same number of real
tokens per step. A run folder that exists is
resumed; a run stopped early (Ctrl-C saves and validates) is measured where it stopped. Then each
model's test perplexity is measured from its own start state (and the stored model's also from
zeros), per real token, on the test split, and the table is written to ``--doc``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from side_by_side import train_side_by_side

from tangpoem_hf.batching import encode_poems, make_batches
from tangpoem_hf.checkpointing import has_checkpoint
from tangpoem_hf.corpus import build_splits
from tangpoem_hf.hub import read_training_info
from tangpoem_hf.modeling import TangPoemLSTM
from tangpoem_hf.scoring import perplexity

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("stored", "learned")


def train(runs: Path, steps: int, corpus: str | None, extra: list[str]) -> None:
    """Both recipes at once, one thread each; each resumes its folder if it has a checkpoint."""
    jobs = {}
    for kind in KINDS:
        out = runs / f"start-{kind}"
        args = ["--out-dir", str(out), "--start-state", kind, "--min-freq", "2", "--seq-len", "64"]
        args += ["--batch-size", "64", "--max-steps", str(steps), "--lr-schedule", "cosine", "--threads", "1"]
        args += ["--checkpoint-every", "100", "--eval-every", "400", "--no-control", "--no-progress", *extra]
        args += ["--corpus", corpus] if corpus else []
        if has_checkpoint(out / "checkpoints"):  # the same flags: --resume refuses any that changed
            args.append("--resume")
        jobs[f"start-{kind}"] = args
    train_side_by_side(jobs, runs, allowed=(0, 130))  # 130: stopped with Ctrl-C after saving and validating


def measure(runs: Path, corpus: str | None) -> list[dict]:
    """Test perplexity of each best/ from its own start state, and the real tokens it trained on."""
    rows = []
    simplified = read_training_info(runs / f"start-{KINDS[0]}" / "best")["train_config"]["simplified"]
    splits, _ = build_splits(corpus, simplified=simplified)  # both runs share the corpus settings
    test = list(splits["test"]["text"])
    for kind in KINDS:
        folder = runs / f"start-{kind}" / "best"
        model = TangPoemLSTM.from_pretrained(folder)
        info = read_training_info(folder)
        row = {"kind": kind, "step": info["step"], "val": info["val_perplexity"], "test": perplexity(model, test)}
        if kind == "stored":
            model.config.start_state = "zeros"  # the same weights, every poem from the all-zero state
            row["test_zeros"] = perplexity(model, test)
        poems = encode_poems(list(splits["train"]["text"]), model.tokenizer, "ours")
        cfg = info["train_config"]
        batches = make_batches(
            poems,
            "ours",
            cfg["batch_size"],
            cfg["seq_len"],
            model.tokenizer.pad_id,
            cfg["seed"],
            per_poem=kind == "learned",
        )
        row["tokens"] = sum(int((batches.get(0, s)[1] != model.tokenizer.pad_id).sum()) for s in range(row["step"]))
        row.update(train_seconds=info["train_seconds"], test_poems=len(test), planned=cfg["max_steps"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict], command: str) -> str:
    by = {r["kind"]: r for r in rows}
    lines = [
        "# Start states: where a poem begins",
        "",
        f"Written by `{command}`.",
        "",
        "A model trained on packed streams has, at nearly every `<bos>`, just read another poem; until",
        "this comparison every poem was generated and scored from the all-zero LSTM state instead, which",
        "it had almost never seen. Two ways to make training and use agree, trained side by side (the",
        "report's model, Adam with a cosine schedule, batches of at most 64 × 64 tokens, fp32, one",
        "thread each) and measured per real token on the test split (copies kept together), each model",
        "from its own start state:",
        "",
        "| start state | how it trains | steps | real tokens | validation | test |",
        "|---|---|---:|---:|---:|---:|",
    ]
    how = {
        "stored": "packed streams, state carried; mean state at `<bos>` stored",
        "learned": "one poem per row, from a learned start state",
    }
    for r in rows:
        lines.append(
            f"| {r['kind']} | {how[r['kind']]} | {r['step']} | {r['tokens'] / 1e6:.2f} M | {r['val']:.2f} "
            f"| **{r['test']:.2f}** |"
        )
    if "test_zeros" in by.get("stored", {}):
        s = by["stored"]
        lines.append(
            f"| zeros | the stored model's weights, every poem from zeros | {s['step']} | — | — "
            f"| {s['test_zeros']:.2f} |"
        )
    stopped = [r for r in rows if r["planned"] and r["step"] < r["planned"]]
    if stopped:
        lines += [
            "",
            "Stopped early (Ctrl-C, which validates and saves) and measured where they stopped: "
            + ", ".join(f"{r['kind']} at step {r['step']} of {r['planned']}" for r in stopped)
            + ". Rerunning the command without `--no-train` continues them.",
        ]
    lines += ["", f"Test poems: {rows[0]['test_poems']}."]
    if len(by) == 2:
        s, learned = by["stored"], by["learned"]
        winner = "stored" if s["test"] < learned["test"] else "learned"
        lines += [
            "",
            f"At about the same number of real tokens, the **{winner}** start state wins on the test split "
            f"({s['test']:.2f} against {learned['test']:.2f}, {abs(1 - s['test'] / learned['test']):.1%}). "
            "Starting the stored "
            f"model's poems from zeros instead costs {s['test_zeros'] / s['test'] - 1:.1%}. "
            + (
                "So new models train on packed streams and store the mean state (`--start-state stored`, the "
                "default); `learned` stays an option."
                if winner == "stored"
                else "So new models train one poem per row from a learned start state."
            ),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800, help="training steps of each recipe [800]")
    parser.add_argument("--runs", default="runs", help="where the two run folders live [runs]")
    parser.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    parser.add_argument(
        "--doc", default=str(ROOT / "docs" / "reports" / "start-state.md"), help="the markdown to write"
    )
    parser.add_argument("--extra-train-args", default="", help="appended to both runs' train.py arguments")
    parser.add_argument("--no-train", action="store_true", help="only measure the run folders as they are")
    args = parser.parse_args(argv)
    command = "python experiments/compare_start_states.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    if not args.no_train:
        train(runs, args.steps, args.corpus, shlex.split(args.extra_train_args))
    rows = measure(runs, args.corpus)
    Path(args.doc).write_text(markdown(rows, command), encoding="utf-8")
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
