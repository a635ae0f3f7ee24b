"""The report's experiment at full length (issue 17): Adam against Adagrad, 20 epochs each.

One command, rerun after a kill to continue (every run lives in its own folder under ``--out-dir``
and resumes from its last atomic checkpoint; finished runs are not redone):

1. Rate check: each optimiser at each rate of ``--lrs-adam`` / ``--lrs-adagrad`` for
   ``--check-epochs``; the rate with the lowest validation perplexity is chosen (the report gives none).
   A best rate at the grid's edge is followed by one twice as far beyond it, up to ``--widen`` times.
   The chosen run is the first epoch of its long run (same seed, same batches), so it is continued.
   Its figures are written to ``rate_check.json``; ``--rate-check FILE`` reads them back instead of
   checking again (a new machine without ``runs/``): the chosen rates and the table follow from them.
2. Main: both optimisers, the report's model (embedding 512 → LSTM 512 → Linear, batch 64) on our
   packed pipeline from the model's start state, ``--epochs`` epochs, validation and test after each.
3. Report: the report's own preprocessing (stripped, cut and padded to 100) for the training seconds
   the main run of the same optimiser took.

Step sizes are logged every ``--stats-every`` steps by a trainer that adds to its log. Writes
``docs/reports/optimizers.md`` and ``docs/reports/optimizers.png`` from the run folders' logs.

    TANGPOEM_CORPUS=DIR nice -n 15 python experiments/compare_optimizers.py --jobs 2
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shlex
import shutil
import signal
import statistics
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tangpoem_hf.batching import REPORT_LENGTH, encode_poems
from tangpoem_hf.checkpointing import has_checkpoint
from tangpoem_hf.errors import InputError
from tangpoem_hf.modeling import TangPoemLSTM
from tangpoem_hf.scoring import char_perplexity, perplexity
from tangpoem_hf.train_config import BF16_FLAG, TrainConfig, add_bf16_flag, changed_settings, resolve_bf16
from tangpoem_hf.training import Trainer

OPTIMIZERS = ("adam", "adagrad")
REPORT = {"adam": 58.0, "adagrad": 43.0}  # the report's training perplexities, padding counted, 20 epochs
RATES = {"adam": (1e-3, 2e-3, 4e-3), "adagrad": (0.025, 0.05, 0.1)}  # the project's defaults ×½, ×1, ×2
MILESTONES = (1, 5, 10, 20)
QUANTILE_SAMPLE = 1 << 20  # parameters the rate percentiles are read from (a fixed stride through all)
# Settings that never make a finished run stale, and those a rerun may also extend (the run continues).
COSMETIC = {"out_dir", "progress", "threads"}
EXTENSIBLE = COSMETIC | {"epochs", "time_budget"}

# --- what each step and validation adds to the log ----------------------------------------------


@torch.no_grad()
def step_sizes(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The step just taken: its RMS over all parameters, and percentiles of the rate per unit gradient.

    Adagrad's rate is lr / (√Σg² + ε), which can only shrink; Adam's is lr / (√v̂ + ε), applied to
    the momentum m̂, which follows the recent gradient scale. That difference is the usual reason for
    the two to trade places over a long run, so it is measured rather than assumed. Parameters that
    have never had a gradient (embedding rows of characters not yet seen) are left out of the rates.
    """
    rates, updates = [], []
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                continue
            step = float(state["step"])
            if "sum" in state:  # adagrad
                lr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
                second, first = state["sum"], p.grad
            else:  # adam / adamw
                lr = group["lr"]
                beta1, beta2 = group["betas"]
                second = state["exp_avg_sq"] / (1 - beta2**step)
                first = state["exp_avg"] / (1 - beta1**step)
            rate = lr / (second.sqrt() + group["eps"])
            rates.append(rate[second > 0].flatten())
            if first is not None:
                updates.append((rate * first).flatten())
    if not rates:
        return {}
    rate = torch.cat(rates)
    rate = rate[:: max(1, rate.numel() // QUANTILE_SAMPLE)]
    p10, p50, p90 = torch.quantile(rate.double(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
    update = torch.cat(updates)
    rms = float(update.double().square().mean().sqrt())
    return {"update_rms": _sig(rms), "rate_p10": _sig(p10), "rate_p50": _sig(p50), "rate_p90": _sig(p90)}


def _sig(x: float) -> float:
    return float(f"{x:.4g}")


@torch.inference_mode()
def padded_perplexity(
    model: TangPoemLSTM, texts: Sequence[str], batch_size: int = 64, length: int = REPORT_LENGTH
) -> float:
    """The report's training perplexity: exp of the mean cross-entropy over padded rows, padding counted.

    As the report (and ``Trainer`` in ``report`` mode) computed its loss: each poem stripped of
    punctuation, cut and padded to ``length`` slots, slots 1..length-1 predicted from those before
    (from a zero state), and every target counted, padding too. Kept only to set the report's figures
    beside ours: an easy pad after a poem's end lowers it, so it is not a perplexity of the poems.
    """
    if model.config.preprocessing != "report":
        raise ValueError("padded_perplexity needs a model trained in the report's preprocessing (--mode report).")
    tok = model.tokenizer
    assert tok is not None
    device = next(model.parameters()).device
    poems = [p for p in encode_poems(texts, tok, "report") if len(p)]
    if not poems:
        raise ValueError("No scorable poems: every poem was empty.")
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    for start in range(0, len(poems), batch_size):
        chunk = poems[start : start + batch_size]
        ids = torch.full((len(chunk), length), tok.pad_id, dtype=torch.long)
        for i, p in enumerate(chunk):
            ids[i, : min(len(p), length)] = torch.from_numpy(p[:length])
        ids = ids.to(device)
        logits = model(ids[:, :-1]).logits.float()
        total += float(F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum"))
        count += ids[:, 1:].numel()
    model.train(was_training)
    return math.exp(total / count)


# --- one run, resumable -------------------------------------------------------------------------


@dataclass
class RunSpec:
    """Everything a worker process needs to train one run (picklable: plain texts, no datasets)."""

    name: str
    cfg: TrainConfig
    texts: dict[str, list[str]]
    train_sample: list[str]
    stats_every: int
    continue_from: str | None = None  # a finished shorter run of the same configuration to extend
    chatty: bool = False


def _changed(saved: dict, wanted: dict, ignore: set[str]) -> list[str]:
    """Settings of ``wanted`` that differ from a saved run's. A setting the saved run predates counts as
    its default, and what the saved file records besides the settings (``bf16_resolved``) is not compared."""
    default = json.loads(json.dumps(asdict(TrainConfig())))
    return changed_settings({**default, **saved}, {k: v for k, v in wanted.items() if k not in ignore})


class StudyTrainer(Trainer):
    """A trainer whose log also holds step sizes every ``every`` steps and held-out figures at each
    validation (fields added to a validation's record are kept in the checkpointed history too)."""

    def __init__(self, spec: RunSpec) -> None:
        super().__init__(spec.cfg)
        self.name = spec.name
        self.test_texts = spec.texts["test"]
        self.train_sample = spec.train_sample
        self.every = spec.stats_every
        self.chatty = spec.chatty  # no progress bar: print a line every few hundred steps instead

    def write_log(self, record: dict) -> None:
        if self.main:
            self.add_figures(record)
        super().write_log(record)

    def add_figures(self, record: dict) -> None:
        if "val_perplexity" in record:
            model = self.model  # the trainer has just refreshed its start state for validation
            record["steps_per_epoch"] = self.batches.steps_per_epoch
            record["test_perplexity"] = round(perplexity(model, self.test_texts), 3)
            record["test_char_perplexity"] = round(char_perplexity(model, self.test_texts), 3)
            if model.config.preprocessing == "report":
                record["padded_train_perplexity"] = round(padded_perplexity(model, self.train_sample), 3)
            tqdm.write(
                f"{self.name}: step {record['step']} (epoch {record['step'] / record['steps_per_epoch']:.2f}): "
                f"validation {record['val_perplexity']:.2f}, test {record['test_perplexity']:.2f}"
            )
        elif record["step"] % self.every == 0 or record["step"] == 1:
            record.update(step_sizes(self.optimizer))
            if self.chatty and record["step"] % (5 * self.every) == 0:
                epoch = record["step"] / self.batches.steps_per_epoch
                print(
                    f"{self.name}: step {record['step']} (epoch {epoch:.2f}), loss {record['loss']:.3f}, "
                    f"{record['elapsed_s']:.0f} s of training",
                    flush=True,
                )


def train_run(spec: RunSpec) -> dict[str, Any]:
    """Train one run to its end, continuing its last checkpoint; a finished run is only read back."""
    cfg, out = spec.cfg, Path(spec.cfg.out_dir)
    wanted = json.loads(json.dumps(asdict(cfg)))
    path, summary_path = out / "train_config.json", out / "summary.json"
    saved = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    if saved is not None and summary_path.exists() and not _changed(saved, wanted, COSMETIC):
        print(f"{spec.name}: finished earlier, read from {out}", flush=True)
        return json.loads(summary_path.read_text())
    changed = _changed(saved, wanted, EXTENSIBLE) if saved is not None else []
    if changed:
        raise InputError(f"{out} holds a run with other settings ({', '.join(changed)}): pick another --out-dir.")
    if spec.continue_from and not has_checkpoint(out / "checkpoints"):
        shutil.rmtree(out, ignore_errors=True)  # no checkpoint: nothing here worth keeping
        shutil.copytree(spec.continue_from, out)
        (out / "summary.json").unlink(missing_ok=True)
        print(f"{spec.name}: continues {spec.continue_from}, its first epoch", flush=True)
    summary_path.unlink(missing_ok=True)
    trainer = StudyTrainer(spec)
    trainer.prepare({name: {"text": texts} for name, texts in spec.texts.items()})
    return trainer.run(resume=has_checkpoint(out / "checkpoints"))


def run_all(specs: list[RunSpec], jobs: int) -> list[dict[str, Any]]:
    """The runs one after the other, or ``jobs`` at a time in worker processes."""
    if jobs <= 1 or len(specs) <= 1:
        return [train_run(s) for s in specs]
    with ProcessPoolExecutor(min(jobs, len(specs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return list(pool.map(train_run, specs))
        except BaseException:
            for child in multiprocessing.active_children():  # our own workers: each checkpoints and stops
                child.terminate()
            raise


# --- reading the runs back ----------------------------------------------------------------------


def read_run(folder: Path) -> dict[str, Any]:
    """A run's validations (with test figures), step-size records, summary and configuration."""
    steps, vals = [], []
    for line in (folder / "train_log.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        (vals if "val_perplexity" in rec else steps).append(rec)
    return {
        "vals": vals,
        "steps": steps,
        "sizes": [r for r in steps if "update_rms" in r],
        "summary": json.loads((folder / "summary.json").read_text()),
        "config": json.loads((folder / "train_config.json").read_text()),
    }


def per_epoch(run: dict[str, Any]) -> dict[int, dict]:
    """Validation records at the end of each whole epoch, by epoch."""
    return {v["step"] // v["steps_per_epoch"]: v for v in run["vals"] if v["step"] % v["steps_per_epoch"] == 0}


def sizes_in_epoch(run: dict[str, Any], epoch: int) -> dict[str, float] | None:
    """Median step-size figures over an epoch's records."""
    rows = [r for r in run["sizes"] if r["epoch"] == epoch]
    if not rows:
        return None
    return {k: statistics.median(r[k] for r in rows) for k in ("update_rms", "rate_p10", "rate_p50", "rate_p90")}


def last_epoch_loss(run: dict[str, Any]) -> float:
    """exp of the mean logged training loss over the last whole epoch: what a trainer prints per epoch."""
    spe = run["vals"][-1]["steps_per_epoch"]
    whole = len(run["steps"]) // spe
    rows = run["steps"][(whole - 1) * spe : whole * spe] if whole else run["steps"]
    return math.exp(sum(r["loss"] for r in rows) / len(rows))


# --- the document -------------------------------------------------------------------------------


def plot(main: dict[str, dict], report: dict[str, dict], out_png: Path) -> Path:
    """Perplexity per epoch, step sizes over training, and our pipeline against the report's."""
    from tangpoem_hf.plotting import plt

    colours = {"adam": "tab:blue", "adagrad": "tab:orange"}
    fig, (ax_ppl, ax_size, ax_pipe) = plt.subplots(1, 3, figsize=(16, 4.6))
    for opt, run in main.items():
        epochs = per_epoch(run)
        xs = sorted(epochs)
        c = colours[opt]
        ax_ppl.plot(xs, [epochs[e]["val_perplexity"] for e in xs], "o-", color=c, label=f"{opt}: validation")
        ax_ppl.plot(xs, [epochs[e]["test_perplexity"] for e in xs], "s--", color=c, label=f"{opt}: test")
        spe = run["vals"][-1]["steps_per_epoch"]
        sx = [r["step"] / spe for r in run["sizes"]]
        ax_size.plot(
            sx, [r["rate_p50"] for r in run["sizes"]], color=c, label=f"{opt}: rate per unit gradient (median)"
        )
        ax_size.fill_between(
            sx, [r["rate_p10"] for r in run["sizes"]], [r["rate_p90"] for r in run["sizes"]], color=c, alpha=0.15
        )
        ax_size.plot(sx, [r["update_rms"] for r in run["sizes"]], ":", color=c, label=f"{opt}: update RMS")
        hours = [v["elapsed_s"] / 3600 for v in run["vals"]]
        ax_pipe.plot(hours, [v["test_char_perplexity"] for v in run["vals"]], "o-", color=c, label=f"{opt}: ours")
    for opt, run in report.items():
        hours = [v["elapsed_s"] / 3600 for v in run["vals"]]
        c = colours[opt]
        ax_pipe.plot(hours, [v["test_char_perplexity"] for v in run["vals"]], "^:", color=c, label=f"{opt}: report's")
    ax_ppl.set(xlabel="epoch", ylabel="perplexity (real tokens)", title="held-out perplexity per epoch", yscale="log")
    ax_size.set(xlabel="epoch", ylabel="size", title="step sizes (band: 10th–90th percentile)", yscale="log")
    ax_pipe.set(xlabel="training hours", ylabel="test perplexity (characters)", title="pipelines", yscale="log")
    for ax in (ax_ppl, ax_size, ax_pipe):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("The report's model: Adam against Adagrad")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def _winner(a: float, b: float, names: tuple[str, str] = OPTIMIZERS) -> str:
    if abs(a - b) < 0.01 * min(a, b):
        return "tie (< 1%)"
    return f"**{names[0] if a < b else names[1]}**"


def render(
    check: dict[str, dict[float, float]],
    chosen: dict[str, float],
    main: dict[str, dict],
    report: dict[str, dict],
    args: argparse.Namespace,
    command: str,
) -> str:
    """docs/reports/optimizers.md from the runs' logs."""
    a, g = main["adam"], main["adagrad"]
    ea, eg = per_epoch(a), per_epoch(g)
    last = min(max(ea), max(eg))
    marks = sorted({m for m in MILESTONES if m <= last} | {last})
    out = [
        "# Adam against Adagrad: the report's experiment at full length",
        "",
        f"Regenerate with `{command}` (rerun it after a kill: every run continues from its last checkpoint).",
        "",
        f"The report's model: embedding {args.embedding_dim} → LSTM {args.hidden_size} → Linear (full softmax), "
        f"batch {args.batch_size}, fp32{' (bf16 autocast)' if args.bf16_resolved else ''}, seed {args.seed}, gradient "
        f"clipping 1.0, constant rate. Our pipeline: poems with their punctuation packed into {args.batch_size} "
        f"streams of {args.seq_len} tokens, each poem from the model's start state (the mean state at <bos>), "
        "the de-duplicated split (copies of a poem stay in one split). Perplexities are per real token "
        "(characters, ，/。, the end marker; no padding) unless said otherwise."
        + (f" Only the first {args.max_train_poems} training poems." if args.max_train_poems else ""),
        "",
        "## Learning rates",
        "",
        "The report does not give its rates, so each optimiser first trained "
        f"{args.check_epochs} epoch(s) at each of these rates; the lowest validation perplexity chose. "
        "Where the best rate lay at the edge of the grid, one twice as far beyond it (×2 or ×½) was "
        f"checked too, up to {args.widen} time(s).",
        "",
        "| optimiser | lr | validation perplexity | chosen |",
        "|---|---:|---:|---|",
    ]
    for opt in OPTIMIZERS:
        if not check.get(opt):
            out.append(f"| {opt} | {chosen[opt]:g} | — | given (--lr-{opt}) |")
            continue
        for lr, ppl in sorted(check[opt].items()):
            out.append(f"| {opt} | {lr:g} | {ppl:.2f} | {'✓' if lr == chosen[opt] else ''} |")
    edges = [opt for opt in OPTIMIZERS if check.get(opt) and chosen[opt] in (min(check[opt]), max(check[opt]))]
    if args.rate_check:
        out += ["", f"The check ran on an earlier machine; its figures come from `{args.rate_check}`."]
    out += [""]
    if edges:
        out += [
            f"The chosen rate of {' and '.join(edges)} still lies at the edge of its grid: a rate beyond it "
            "might do better still.",
            "",
        ]
    out += [
        f"A {args.check_epochs}-epoch check favours rates that make fast early progress; over "
        f"{args.epochs} epochs a smaller rate may end lower. The chosen run is also the first epoch of "
        "the long run (same seed and batches), which continues it.",
        "",
        "## Perplexity per epoch",
        "",
        "| epoch | adam validation | adam test | adagrad validation | adagrad test | lower test |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for e in sorted(set(ea) & set(eg)):
        va, vg = ea[e], eg[e]
        out.append(
            f"| {e} | {va['val_perplexity']:.2f} | {va['test_perplexity']:.2f} | {vg['val_perplexity']:.2f} "
            f"| {vg['test_perplexity']:.2f} | {_winner(va['test_perplexity'], vg['test_perplexity'])} |"
        )
    out += [
        "",
        "Test perplexity is taken with each epoch's weights, as validation is; the best validation epoch "
        f"was {min(ea, key=lambda e: ea[e]['val_perplexity'])} for adam and "
        f"{min(eg, key=lambda e: eg[e]['val_perplexity'])} for adagrad.",
        "",
        "## Who wins, and why",
        "",
        "| epoch | adam test | adagrad test | winner | adam update RMS | adagrad update RMS "
        "| adam rate (median) | adagrad rate (median) |",
        "|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for e in marks:
        sa, sg = sizes_in_epoch(a, e), sizes_in_epoch(g, e)
        ta, tg = ea[e]["test_perplexity"], eg[e]["test_perplexity"]
        cells = [f"{s[k]:.3g}" if s else "—" for k in ("update_rms",) for s in (sa, sg)]
        cells += [f"{s[k]:.3g}" if s else "—" for k in ("rate_p50",) for s in (sa, sg)]
        out.append(f"| {e} | {ta:.2f} | {tg:.2f} | {_winner(ta, tg)} | " + " | ".join(cells) + " |")
    out += ["", *why(a, g, marks), "", "## The report's preprocessing, and its figures", ""]
    out += [
        "The report's pipeline (punctuation stripped, each poem cut and padded to 100, one poem per row from "
        "a zero state, the loss counting the padding) trained for the training seconds the main run of the "
        "same optimiser took, at the same rate. Its own perplexity counts different tokens, so both pipelines "
        "are compared on the test poems' Han characters 2..100 (`char_perplexity`). The report's figure is "
        "`padded_perplexity` over the first "
        f"{args.padded_poems} training poems with the final weights (cross-entropy over the 99 predicted "
        "slots of each padded row, padding counted), and exp of the mean logged training loss over the last "
        "whole epoch (what a trainer prints).",
        "",
        "| optimiser | lr | training s | epochs | padded train perplexity | last epoch's training loss, exp "
        "| report's figure | test char perplexity, report's pipeline | test char perplexity, ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for opt, run in report.items():
        final = run["vals"][-1]
        ours = main[opt]["vals"][-1]
        out.append(
            f"| {opt} | {chosen[opt]:g} | {run['summary']['train_seconds']:.0f} "
            f"| {final['step'] / final['steps_per_epoch']:.2f} | {final['padded_train_perplexity']:.1f} "
            f"| {last_epoch_loss(run):.1f} | {REPORT[opt]:g} | {final['test_char_perplexity']:.2f} "
            f"| {ours['test_char_perplexity']:.2f} |"
        )
    out += [
        "",
        "The padded figure mixes an easy task (another pad after the poem's end) into the hard one, so it "
        "comes out far below any perplexity of the poems themselves and says little about which model writes "
        "better; it is here only to set ours beside the report's 58 and 43.",
        "",
        "![Adam against Adagrad](optimizers.png)",
        "",
        "## Reproduce",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    return "\n".join(out)


def why(adam: dict, adagrad: dict, marks: list[int]) -> list[str]:
    """Sentences read off the logs: who leads when, and how each optimiser's steps changed."""
    ea, eg = per_epoch(adam), per_epoch(adagrad)
    common = sorted(set(ea) & set(eg))
    leader = ["adam" if ea[e]["test_perplexity"] < eg[e]["test_perplexity"] else "adagrad" for e in common]
    swaps = [common[i] for i in range(1, len(common)) if leader[i] != leader[i - 1]]
    lines = [
        f"By test perplexity {leader[0]} leads after epoch {common[0]}"
        + (
            "; the lead changes at epoch " + ", ".join(str(e) for e in swaps) + f", and {leader[-1]} ends ahead."
            if swaps
            else f" and keeps the lead to epoch {common[-1]}."
        )
    ]
    first, final = marks[0], marks[-1]
    for name, run in (("Adagrad", adagrad), ("Adam", adam)):
        s0, s1 = sizes_in_epoch(run, first), sizes_in_epoch(run, final)
        if s0 and s1 and final != first:
            lines.append(
                f"{name}'s median rate per unit gradient went from {s0['rate_p50']:.3g} in epoch {first} to "
                f"{s1['rate_p50']:.3g} in epoch {final} (×{s1['rate_p50'] / s0['rate_p50']:.2g}), its update RMS "
                f"from {s0['update_rms']:.3g} to {s1['update_rms']:.3g} (×{s1['update_rms'] / s0['update_rms']:.2g})."
            )
    lines.append(
        "Adagrad divides by the root of every squared gradient it has seen, so its rates can only fall, fastest "
        "for the parameters with the largest gradients; Adam divides by a running average of recent squared "
        "gradients, so its rates follow the gradients' current size, up or down. A falling step helps late "
        "(less noise around a minimum) and hurts when it falls before the model has learnt enough; the table "
        "shows how large each optimiser's steps were where the lead changed."
    )
    return [" ".join(lines)]


# --- the command --------------------------------------------------------------------------------


def load_texts(args: argparse.Namespace) -> dict[str, list[str]]:
    """The de-duplicated split's texts, each split cut to its --max-*-poems (hash-ordered: a fair sample)."""
    from tangpoem_hf.corpus import build_splits

    splits, _ = build_splits(args.corpus)
    limits = {"train": args.max_train_poems, "validation": args.max_val_poems, "test": args.max_test_poems}
    return {name: list(splits[name]["text"])[: limits[name] or None] for name in limits}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", help="chinese-poetry folder or Hub dataset id (default: $TANGPOEM_CORPUS)")
    p.add_argument("--epochs", type=int, default=20, help="epochs of each main run [20]")
    p.add_argument("--check-epochs", type=int, default=1, help="epochs of each rate-check run [1]")
    for opt in OPTIMIZERS:
        p.add_argument(f"--lrs-{opt}", type=float, nargs="+", default=list(RATES[opt]), help="rates to check")
        p.add_argument(f"--lr-{opt}", type=float, help="use this rate and skip the check")
    p.add_argument(
        "--rate-check",
        type=Path,
        help="a rate check's figures (the rate_check.json it wrote): choose from them instead of checking again",
    )
    p.add_argument(
        "--widen",
        type=int,
        default=2,
        help="times the rate check may go one step (×2 or ×½) beyond a best rate at its grid's edge [2]",
    )
    p.add_argument("--report-seconds", type=float, help="training seconds of each report-mode run [the main run's]")
    p.add_argument("--max-train-poems", type=int, help="train on the first N training poems (quick runs)")
    p.add_argument("--max-val-poems", type=int, help="validate on the first N validation poems")
    p.add_argument("--max-test-poems", type=int, help="test on the first N test poems")
    p.add_argument("--padded-poems", type=int, default=2000, help="training poems for the report's figure [2000]")
    p.add_argument("--embedding-dim", type=int, default=512)
    p.add_argument("--hidden-size", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--stats-every", type=int, default=50, help="steps between step-size records [50]")
    p.add_argument("--seed", type=int, default=0)
    add_bf16_flag(p, "bf16 autocast (the run folders record the resolved value)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, one thread each [1]")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run [1 with --jobs > 1, else torch's]")
    p.add_argument("--out-dir", type=Path, default=Path("runs/optimizers"), help="run folders")
    p.add_argument("--doc", type=Path, default=Path("docs/reports/optimizers.md"))
    p.add_argument("--png", type=Path, default=Path("docs/reports/optimizers.png"))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.check_epochs < 1 or args.epochs < 1:
        p.error("--epochs and --check-epochs must be at least 1.")
    if args.widen < 0:
        p.error("--widen must be 0 or more.")
    args.bf16_resolved = resolve_bf16(BF16_FLAG[args.bf16], torch.device(args.device))
    return args


def command_line(argv: list[str]) -> str:
    """The command as run, the corpus path replaced by $TANGPOEM_CORPUS (it differs per machine)."""
    shown = [a for i, a in enumerate(argv) if not (a.startswith("--corpus") or (i and argv[i - 1] == "--corpus"))]
    return ("TANGPOEM_CORPUS=DIR python experiments/compare_optimizers.py " + shlex.join(shown)).strip()


def read_rate_check(path: Path) -> dict[str, dict[float, float]]:
    """A rate check's figures as :func:`experiment` wrote them, or one clear error."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
        return {opt: {float(lr): float(ppl) for lr, ppl in found[opt].items()} for opt in OPTIMIZERS}
    except (OSError, ValueError, KeyError, AttributeError) as e:
        raise InputError(f"{path} is not a rate check's rate_check.json ({e}).") from e


def check_perplexities(runs: dict[float, dict]) -> dict[float, float]:
    """Each checked rate's validation perplexity at the end of its check."""
    return {lr: run["vals"][-1]["val_perplexity"] for lr, run in runs.items()}


def beyond_edge(perplexities: dict[float, float]) -> float | None:
    """The next rate to check when the best one lies at an edge of the grid (twice or half it), else None.

    A best rate at the edge says only that the optimum lies beyond the grid; checking one step further
    keeps the comparison from hinging on where the grid happened to stop."""
    if len(perplexities) < 2:
        return None
    best = min(perplexities, key=perplexities.get)
    if best == max(perplexities):
        return best * 2
    if best == min(perplexities):
        return best / 2
    return None


def experiment(args: argparse.Namespace, argv: list[str]) -> None:
    texts = load_texts(args)
    sample = texts["train"][: args.padded_poems]
    threads = args.threads or (1 if args.jobs > 1 else 0)
    base = TrainConfig(
        embedding_dim=args.embedding_dim,
        hidden_size=args.hidden_size,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        seed=args.seed,
        bf16=args.bf16_resolved,
        device=args.device,
        threads=threads,
        progress=not args.no_progress and args.jobs <= 1,
        control=False,  # the report's model reads the poem alone, with no control segment
    )

    def spec(name: str, **changes: Any) -> RunSpec:
        cfg = replace(base, out_dir=str(args.out_dir / name), **changes)
        return RunSpec(name, cfg, texts, sample, args.stats_every, chatty=not cfg.progress)

    check: dict[str, dict[float, dict]] = {opt: {} for opt in OPTIMIZERS}
    earlier = read_rate_check(args.rate_check) if args.rate_check else {}
    todo = {
        opt: list(getattr(args, f"lrs_{opt}"))
        for opt in OPTIMIZERS
        if getattr(args, f"lr_{opt}") is None and opt not in earlier
    }
    for _ in range(1 + args.widen):
        checks = [
            spec(f"check-{opt}-lr{lr:g}", optimizer=opt, lr=lr, epochs=args.check_epochs)
            for opt, lrs in todo.items()
            for lr in lrs
        ]
        if not checks:
            break
        print(f"Rate check: {len(checks)} runs of {args.check_epochs} epoch(s).", flush=True)
        run_all(checks, args.jobs)
        for s in checks:
            check[s.cfg.optimizer][s.cfg.lr] = read_run(Path(s.cfg.out_dir))
        todo = {opt: [lr] for opt in todo if (lr := beyond_edge(check_perplexities(check[opt]))) is not None}
    checked = {opt: earlier.get(opt) or check_perplexities(check[opt]) for opt in OPTIMIZERS}
    if any(check.values()):
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "rate_check.json").write_text(json.dumps(checked, indent=2))
    chosen = {opt: getattr(args, f"lr_{opt}") or min(checked[opt], key=checked[opt].get) for opt in OPTIMIZERS}
    print("Chosen rates: " + ", ".join(f"{o} {lr:g}" for o, lr in chosen.items()), flush=True)
    mains = []
    for opt in OPTIMIZERS:
        s = spec(f"main-{opt}", optimizer=opt, lr=chosen[opt], epochs=args.epochs)
        if check[opt] and args.check_epochs <= args.epochs:
            s.continue_from = str(args.out_dir / f"check-{opt}-lr{chosen[opt]:g}")
        mains.append(s)
    print(f"Main runs: {args.epochs} epochs each.", flush=True)
    done = run_all(mains, args.jobs)
    reports = [
        spec(
            f"report-{opt}",
            mode="report",
            optimizer=opt,
            lr=chosen[opt],
            epochs=100 * args.epochs,  # never reached: the time budget stops it
            time_budget=args.report_seconds or summary["train_seconds"],
        )
        for opt, summary in zip(OPTIMIZERS, done)
    ]
    print("Report-mode runs: " + ", ".join(f"{s.cfg.time_budget:.0f} s" for s in reports) + ".", flush=True)
    run_all(reports, args.jobs)
    main = {s.cfg.optimizer: read_run(Path(s.cfg.out_dir)) for s in mains}
    report = {s.cfg.optimizer: read_run(Path(s.cfg.out_dir)) for s in reports}
    plot(main, report, args.png)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(render(checked, chosen, main, report, args, command_line(argv)), encoding="utf-8")
    results = {"chosen": chosen, "main": {o: r["vals"] for o, r in main.items()}}
    results["report"] = {o: r["vals"] for o, r in report.items()}
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {args.doc} and {args.png}")


def _stop(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _stop)  # a plain kill stops as cleanly as Ctrl-C
    try:
        experiment(args, argv)
    except KeyboardInterrupt:
        print("Interrupted: every run keeps its last checkpoint; rerun the same command to continue.")
        return 130
    except InputError as e:
        print(f"compare_optimizers: error: {e}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
