"""The peers (issue 21): three recipes trained from scratch side by side for the same CPU time, and the
release model listed below them with its own budget.

    TANGPOEM_CORPUS=DIR nohup nice -n 5 python experiments/release_results.py --budget 3600 > runs/peers.log 2>&1 &

Every arm goes through this project's pipeline (packed batches of 64-token chunks with the LSTM state
carried over, today's Tang split, the characters seen at least twice), all at once, one torch thread
each, for the same ``--budget`` seconds of training, so each sees the same machine load:

- ``report``: embedding 512 → LSTM 512 → Linear, Adagrad, batch 64 (the course report);
- ``pytorch-book``: embedding 128 → 2-layer LSTM 256 → Linear, Adam 1e-3, batch 128
  (chenyuntc/pytorch-book, chapter 9, the peer Tang-poem generator);
- ``ours``: the release recipe: 2 × LSTM 512, tied embeddings, dropout 0.3, Adam with a cosine
  schedule after 200 warm-up steps, averaged weights (0.998), batch 64, and the control segment.

The peers read the poem alone (``--no-control``), as their projects do; ours reads the control
segment, as this project's model is used. A run folder with a checkpoint is resumed and a finished
one is only read, so rerunning the command after a kill goes on where it stopped. Every arm's best/
and the release model are then scored with :func:`tangpoem_hf.scoring.perplexity` (real tokens, each
poem from the model's own start state) on the Tang test poems that none of them trained on; the table
replaces the marked section of ``--doc`` and the curves go to results.png beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from doc_sections import page_with_section, write_section  # noqa: E402
from side_by_side import train_side_by_side  # noqa: E402

from tangpoem_hf.checkpointing import has_checkpoint  # noqa: E402
from tangpoem_hf.control import CONTROL_TOKENS  # noqa: E402
from tangpoem_hf.corpus import LEGACY_SPLIT, SPLIT_VERSION, build_splits, never_trained_on  # noqa: E402
from tangpoem_hf.hub import read_training_info, stage_model_folder  # noqa: E402
from tangpoem_hf.modeling import BUNDLED_MODEL_DIR, TangPoemLSTM  # noqa: E402
from tangpoem_hf.plotting import read_log  # noqa: E402
from tangpoem_hf.scoring import encode_scored, perplexity  # noqa: E402
from tangpoem_hf.tokenizer import SPECIALS  # noqa: E402
from tangpoem_hf.train_config import default_lr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MARK_START, MARK_END = "<!-- peers table: experiments/release_results.py -->", "<!-- end of peers table -->"
HEADING = "## The peers' recipes, trained side by side"
COMMON = ["--min-freq", "2", "--seq-len", "64", "--eval-every", "200", "--checkpoint-every", "100", "--no-progress"]
ARMS: dict[str, tuple[str, list[str]]] = {  # name → (label, its own flags)
    "report": (
        "report recipe",
        ["--no-control", "--embedding-dim", "512", "--hidden-size", "512", "--num-layers", "1", "--optimizer"]
        + ["adagrad", "--batch-size", "64", "--epochs", "20"],
    ),
    "pytorch-book": (
        "pytorch-book recipe",
        ["--no-control", "--embedding-dim", "128", "--hidden-size", "256", "--num-layers", "2", "--optimizer"]
        + ["adam", "--lr", "1e-3", "--batch-size", "128", "--epochs", "20"],
    ),
    "ours": (
        "ours (the release recipe)",
        ["--embedding-dim", "512", "--hidden-size", "512", "--num-layers", "2", "--tie-weights", "--dropout", "0.3"]
        + ["--optimizer", "adam", "--lr-schedule", "cosine", "--warmup-steps", "200", "--average", "0.998"]
        + ["--batch-size", "64", "--epochs", "{ours_epochs}"],
    ),
}
PEERS = ("report", "pytorch-book")  # the other projects' recipes; ours is this project's
OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad", "sgd": "SGD"}
GOAL = 0.20  # issue 14: the release model's test perplexity at least this much below the better peer's


def arm_args(name: str, args: argparse.Namespace) -> list[str]:
    """One arm's ``tangpoem train`` flags; a run folder with a checkpoint resumes with its saved ones."""
    out = args.runs / name
    threads = ["--threads", str(args.threads)]
    if has_checkpoint(out / "checkpoints"):
        return ["--resume", "--out-dir", str(out), *threads, "--no-progress"]
    own = [a.format(ours_epochs=args.ours_epochs) for a in ARMS[name][1]]
    corpus = ["--corpus", args.corpus] if args.corpus else []
    return ["--out-dir", str(out), *corpus, *COMMON, *own, "--time-budget", str(args.budget), *threads, *args.extra]


def train(args: argparse.Namespace) -> None:
    """Every unfinished arm at once, one thread each, so that all share the machine's load."""
    jobs = {name: arm_args(name, args) for name in ARMS if not (args.runs / name / "summary.json").exists()}
    if jobs:
        train_side_by_side(jobs, args.runs, allowed=(0, 130))  # 130: stopped by a signal after a checkpoint
    unfinished = [name for name in ARMS if not (args.runs / name / "summary.json").exists()]
    if unfinished:
        raise SystemExit(f"{', '.join(unfinished)} stopped before the end: rerun the same command to resume.")


def run_figures(run: Path) -> dict[str, Any]:
    """Training time, steps, tokens seen, the validation curve and the schedule's end, from a run folder."""
    steps, vals = read_log(run / "train_log.jsonl")
    cfg = json.loads((run / "train_config.json").read_text(encoding="utf-8"))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    done = summary["steps"]
    return {
        "train_seconds": summary["train_seconds"],
        "threads": cfg["threads"],
        "steps": done,
        "tokens": done * cfg["batch_size"] * cfg["seq_len"],
        "epochs_seen": epochs_seen(steps, done),
        "curve": [(v["elapsed_s"], v["val_perplexity"]) for v in vals],
        "last_lr": steps[-1]["lr"] / peak_lr(cfg) if steps else math.nan,
        "stopped_by": summary["stopped_by"],
        "bf16": cfg["bf16_resolved"],
        "recipe": recipe(cfg),
    }


def release_figures(model_dir: Path, run: Path | None) -> dict[str, Any]:
    """The release model's budget from its own training.json (best/ may predate its run's end), its
    base's added when the base is kept in this checkout (a release fine-tuned from a long first phase
    must not look cheap), and its validation curve from its run folder when one is given."""
    info = read_training_info(model_dir)
    cfg = info["train_config"]
    steps, vals = read_log(run / "train_log.jsonl") if run is not None else ([], [])
    base = cfg.get("extra", {}).get("finetune", {}).get("base_model")
    found = base is not None and (ROOT / base / "training.json").is_file()  # a base kept in this checkout (runs/…)
    before = read_training_info(ROOT / base) if found else {"train_seconds": 0, "step": 0, "train_config": cfg}
    before_tokens = before["step"] * before["train_config"]["batch_size"] * before["train_config"]["seq_len"]
    return {
        "train_seconds": info["train_seconds"] + before["train_seconds"],
        "base_seconds": before["train_seconds"] if found else None,
        "threads": cfg.get("threads"),
        "steps": info["step"] + before["step"],
        "tokens": info["step"] * cfg["batch_size"] * cfg["seq_len"] + before_tokens,
        "epochs_seen": epochs_seen(steps, info["step"]) if steps and not found else "",
        "curve": [(v["elapsed_s"], v["val_perplexity"]) for v in vals],
        "bf16": info.get("bf16_resolved", cfg.get("bf16")),
        "recipe": recipe(cfg),
        "hardware": info.get("hardware", "hardware not recorded"),
        "base": base,
    }


def peak_lr(cfg: dict[str, Any]) -> float:
    return cfg["lr"] if cfg["lr"] is not None else default_lr(cfg["optimizer"], cfg["batch_size"])


def recipe(cfg: dict[str, Any]) -> str:
    """The table's one-line description, read from the run's own train_config.json."""
    warmup = cfg.get("warmup_steps", 0)
    schedule = cfg["lr_schedule"] + (f" after {warmup} warm-up steps" if warmup else "")
    parts = [
        f"embedding {cfg['embedding_dim']} → {cfg['num_layers']}-layer LSTM {cfg['hidden_size']} → Linear"
        + (" (tied)" if cfg.get("tie_weights") else ""),
        f"{OPTIMIZER_NAMES.get(cfg['optimizer'], cfg['optimizer'])} (lr {peak_lr(cfg):g}, {schedule})",
        f"batch {cfg['batch_size']}",
    ]
    parts += [f"dropout {cfg['dropout']:g}"] if cfg["dropout"] else []
    parts += [f"averaged weights ({cfg['average']:g})"] if cfg.get("average") else []
    parts += ["control segment"] if cfg.get("control", True) else ["poem alone"]
    return ", ".join(parts)


def epochs_seen(steps: list[dict], done: int) -> str:
    """How many passes over the training poems ``done`` steps are, once the log has crossed an epoch's end."""
    firsts = [r["step"] for r in steps if r["epoch"] == 2][:1]
    return f"{done / (firsts[0] - 1):.2f} epochs" if firsts else "epoch 1"


def characters(model: TangPoemLSTM) -> list[str]:
    """The vocabulary without the control tokens: what a model with and one without them share."""
    return [t for t in model.tokenizer.tokens if t not in CONTROL_TOKENS]


def unk_share(model: TangPoemLSTM, texts: list[str]) -> float:
    """The share of scored test tokens that are ``<unk>`` to this model (an easier target than a character)."""
    unk, total = 0, 0
    for ids, context in encode_scored(model, texts):
        unk += int((ids[context:] == model.tokenizer.unk_id).sum())
        total += len(ids) - context
    return unk / total


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Every arm's best/ and the release model on the test poems none of them trained on."""
    releases = {"release": args.release_model} | ({"previous": args.previous_model} if args.previous_model else {})
    read_split = "+".join(read_training_info(m).get("split", LEGACY_SPLIT) for m in releases.values())
    splits, _ = build_splits(args.corpus)
    test = never_trained_on(splits, "test", f"{read_split}+{SPLIT_VERSION}")
    test_note = f"{len(test)} of the {len(splits['test'])} Tang test poems" + (
        ": a release model was trained under the older poem-id split first, so every test poem it, or a copy "
        "of it, trained on is left out for every model"
        if LEGACY_SPLIT in read_split.split("+")
        else " (today's split: copies kept together, none shares a line with a training poem)"
    )
    rows, vocabulary = [], None
    for name, (label, _) in ARMS.items():
        model = TangPoemLSTM.from_pretrained(args.runs / name / "best")
        if vocabulary is not None and characters(model) != vocabulary:
            raise SystemExit(f"the {name} arm has other characters than the arms before it: not comparable.")
        vocabulary = characters(model)
        rows.append({"name": name, "label": label, **score(model, test), **run_figures(args.runs / name)})
        print(f"{label}: test perplexity {rows[-1]['test']:.2f}", flush=True)
    for name, folder in reversed(releases.items()):  # the release last: the table's subject
        where = "bundled" if _is_bundled(folder) else str(folder)
        label = f"{'release' if name == 'release' else 'previous release'} model ({where})"
        row = {"name": name, "label": label, **score(TangPoemLSTM.from_pretrained(folder), test)}
        rows.append(row | release_figures(folder, args.release if name == "release" else None))
        print(f"{label}: test perplexity {row['test']:.2f}", flush=True)
    return rows, test_note


def score(model: TangPoemLSTM, test: list[str]) -> dict[str, Any]:
    return {
        "test": perplexity(model, test),
        "unk": unk_share(model, test),
        "params": sum(p.numel() for p in model.parameters()),
        "characters": sum(t not in SPECIALS for t in characters(model)),
        "control": bool(model.config.control),
    }


def _is_bundled(folder: Path) -> bool:
    return folder.resolve() == BUNDLED_MODEL_DIR.resolve()


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for row in rows:
        if row["curve"]:
            xs, ys = zip(*row["curve"])
            ax.plot([x / 60 for x in xs], ys, "o-", markersize=3, label=f"{row['label']} (test {row['test']:.1f})")
    ax.set(xlabel="training time (minutes)", ylabel="validation perplexity", xscale="log", yscale="log")
    ax.set_title("Validation perplexity against training time (real tokens)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _change(new: float, old: float) -> str:
    gain = 1 - new / old
    return f"{gain:.1%} lower" if gain >= 0 else f"{-gain:.1%} higher"


def _threads(n: int | None) -> str:
    """``--threads`` as a phrase: 0 is torch's default (every core), None an older run that kept no record."""
    if n is None:
        return "threads not recorded"
    return f"{n} thread{'s' if n != 1 else ''}" if n else "torch's default threads"


def _names(labels: list[str]) -> str:
    return " and ".join([", ".join(labels[:-1]), labels[-1]] if len(labels) > 2 else labels) or "none"


def _sentence_start(text: str) -> str:
    return text[:1].upper() + text[1:]


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, command: str, test_note: str) -> str:
    """The peers' table and what it rests on: the section that replaces the marked one of the results page."""
    *arms, release = rows
    previous = next((r for r in arms if r["name"] == "previous"), None)
    ours = next(r for r in arms if r["name"] == "ours")
    best_peer = min((r for r in arms if r["name"] in PEERS), key=lambda r: r["test"])
    lines = [
        f"Measured with `{command}` on {args.hardware}; test: {test_note}.",
        "",
        "| model | recipe | parameters | characters | bf16 | training time | steps | tokens seen (epochs) "
        "| `<unk>` in test | test perplexity |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        epochs = f" ({r['epochs_seen']})" if r["epochs_seen"] else ""
        lines.append(
            f"| {r['label']} | {r['recipe']} | {r['params']:,} | {r['characters']:,} | {'on' if r['bf16'] else 'off'} "
            f"| {r['train_seconds'] / 60:.1f} min, {_threads(r['threads'])} | {r['steps']:,} "
            f"| {r['tokens'] / 1e6:.2f} M{epochs} | {r['unk']:.2%} | **{r['test']:.2f}** |"
        )
    base = ""
    if release["base"]:
        minutes = release["base_seconds"]
        counted = f"its {minutes / 60:.0f} minutes and steps are counted" if minutes is not None else ""
        base = f", continued from {release['base']} ({counted or 'whose own training is not counted'})"
    reason = ours["stopped_by"].split(": ", 1)[-1].rstrip(".")
    with_form = _sentence_start(_names([r["label"] for r in rows if r["control"]]))
    alone = _names([r["label"] for r in rows if not r["control"]])
    lines += [
        "",
        f"The three arms trained at the same time, {_threads(args.threads)} each, for {args.budget:.0f} s of "
        "training each (the clock counts training steps, not validations), so all three saw the same machine load. "
        "Every model is scored per real token of the poem (characters, ，/。 and the end marker; no padding), each "
        f"poem from the model's own start state. {with_form} read `<bos>` and the poem's form before it, as the "
        f"app uses this project's models; {alone} read `<bos>` alone, as their projects do. The arms share one "
        "character vocabulary (checked); `<unk>` is the share of test tokens outside a model's vocabulary, which "
        "it predicts as one easy class. bf16 is what each run's `auto` setting resolved to.",
        "",
        f"Ours' cosine schedule spans {args.ours_epochs} epoch{'s' if args.ours_epochs != 1 else ''} of the Tang "
        "training poems (`--ours-epochs`), meant to be about what one thread trains in the budget: a schedule far "
        "longer than the budget would leave ours near its peak rate throughout, and one much shorter would stop "
        f"it early. Ours stopped at step {ours['steps']:,}: {reason}; its rate was then {ours['last_lr']:.0%} of "
        "its peak. The peers keep their own constant rates.",
        "",
        f"The release model is listed with its own budget: {release['train_seconds'] / 60:.0f} minutes of "
        f"training ({_threads(release['threads'])}, {release['hardware']}){base}. Its test perplexity is "
        f"{_change(release['test'], ours['test'])} than ours trained for {args.budget:.0f} s, and "
        f"{_change(release['test'], best_peer['test'])} than the better peer's ({best_peer['label']}); issue 14's "
        f"goal, at least {GOAL:.0%} lower than the better peer's, is "
        + ("met." if 1 - release["test"] / best_peer["test"] >= GOAL else "**not met**."),
        "",
    ]
    if previous:
        lines += [
            f"Against the previous release on the same poems ({previous['test']:.2f}): "
            f"{_change(release['test'], previous['test'])}.",
            "",
        ]
    lines += [
        f"![validation perplexity against training time]({args.plot.name})",
        "",
    ]
    return "\n".join(lines)


def annotate(folder: Path, rows: list[dict[str, Any]]) -> None:
    """Record the comparison in the release model's training.json and rewrite its card from it."""
    info = read_training_info(folder)
    release = rows[-1]
    best_peer = min((r for r in rows if r["name"] in PEERS), key=lambda r: r["test"])
    info["comparison"] = {
        "test_perplexity": {r["label"]: round(r["test"], 2) for r in rows},
        "training_seconds": {r["label"]: round(r["train_seconds"], 1) for r in rows},
        "recipes": {r["label"]: r["recipe"] for r in rows},
        "lower_than_better_peer": round(1 - release["test"] / best_peer["test"], 4),
        "details": "docs/reports/results.md",
    }
    (folder / "training.json").write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    stage_model_folder(folder, folder, bundled=_is_bundled(folder))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=3600.0, help="seconds of training for each arm [3600]")
    p.add_argument("--ours-epochs", type=int, default=1, help="the length of ours' cosine schedule, in epochs [1]")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "peers", help="one run folder per arm [runs/peers]")
    p.add_argument("--threads", type=int, default=1, help="torch threads per arm [1]")
    p.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    p.add_argument(
        "--release-model", type=Path, default=BUNDLED_MODEL_DIR, help="the release model's folder [the bundled one]"
    )
    p.add_argument("--release", type=Path, help="the release model's run folder, for its validation curve")
    p.add_argument(
        "--previous-model", type=Path, help="the release it replaces, scored on the same poems (none of both read)"
    )
    p.add_argument(
        "--doc",
        type=Path,
        default=ROOT / "docs" / "reports" / "results.md",
        help="the results page [docs/reports/results.md]",
    )
    hardware = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    p.add_argument("--hardware", default=hardware, help=f"the machine, as the table names it [{hardware}]")
    p.add_argument("--extra-train-args", default="", help="appended to every arm's flags, e.g. '--device cuda'")
    p.add_argument("--no-train", action="store_true", help="only measure the finished arms")
    p.add_argument("--annotate", action="store_true", help="record the comparison in --release-model's card too")
    args = p.parse_args(argv)
    args.extra, args.plot = shlex.split(args.extra_train_args), args.doc.with_name("results.png")
    command = "python experiments/release_results.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    page_with_section(args.doc, MARK_START, MARK_END, HEADING)  # a page it cannot fill fails now, not in an hour
    args.runs.mkdir(parents=True, exist_ok=True)
    if not args.no_train:
        train(args)
    rows, test_note = measure(args)
    (args.runs / "peers.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    plot(rows, args.plot)
    write_section(args.doc, MARK_START, MARK_END, markdown(rows, args, command, test_note), heading=HEADING)
    print(f"wrote the peers' table into {args.doc} and the curves to {args.plot}")
    if args.annotate:
        annotate(args.release_model, rows)
        print(f"recorded the comparison in {args.release_model / 'training.json'} and its card")
    return 0 if all(math.isfinite(r["test"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
