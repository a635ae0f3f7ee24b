"""The report's training pipeline against ours, the same seconds each, in one process.

Report: fp32, punctuation stripped, each poem cut and padded to 100, a full softmax, batch 64,
Adam, no state between batches. Ours: poems with punctuation and <bos>/<eos> packed into a stream
(no padding, LSTM state carried), bf16 autocast for the output layer where the machine runs bf16 in
hardware (``--bf16 auto``, the default: CUDA, or a CPU with AVX512-BF16 or AMX; elsewhere fp32, since
emulated bf16 is slower than fp32), and an adaptive softmax over the frequency-sorted ids. Same
embedding and hidden size, same seed, same optimiser. ``--bf16 off`` measures what a CPU without
bf16 units runs on one that has them.

The two run in alternating slices (``--slice`` seconds each; a report step takes longer than the
default, so the two then alternate step by step), so a neighbour's load on a shared machine hits
both alike. Only training steps are timed; evaluation is not. Printed per pipeline:
real (non-pad) target tokens per second, its own validation perplexity (over the tokens it
predicts), and the comparable one, :func:`~tangpoem_hf.scoring.char_perplexity`: per Han
character 2..100 of each validation poem, what the report's model scores. The last line is
``speedup: X``, the ratio of real tokens per second.

    TANGPOEM_CORPUS=DIR nice -n 5 python benchmarks/train_throughput.py --seconds 150
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tangpoem_hf.batching import prepare_text
from tangpoem_hf.corpus import build_splits
from tangpoem_hf.modeling import TangPoemConfig, TangPoemLSTM
from tangpoem_hf.scoring import char_perplexity, perplexity
from tangpoem_hf.tokenizer import CharTokenizer
from tangpoem_hf.train_config import BF16_FLAG, TrainConfig, add_bf16_flag, native_bf16
from tangpoem_hf.training import Trainer


@dataclass
class Pipeline:
    """One Trainer after ``prepare()``, stepped here so that the two can alternate."""

    name: str
    trainer: Trainer
    steps: int = 0
    seconds: float = 0.0
    real_tokens: int = 0
    carried: Any = None
    losses: list[float] = field(default_factory=list)

    def step(self) -> None:
        """One optimiser step, the one Trainer.run takes (minus logging), timed."""
        tr = self.trainer
        spe = tr.batches.steps_per_epoch
        epoch, in_epoch = divmod(self.steps, spe)
        if in_epoch == 0:
            self.carried = None
        t0 = time.perf_counter()
        x, y = tr.batches.get(epoch, in_epoch)
        loss, self.carried = tr.train_step(x, y, self.carried)
        self.seconds += time.perf_counter() - t0
        self.steps += 1
        self.real_tokens += int((y != tr.tokenizer.pad_id).sum())
        self.losses.append(float(loss))

    def train_for(self, seconds: float, until: float) -> None:
        """Step for about ``seconds`` more, never past ``until`` seconds in all."""
        stop = min(self.seconds + seconds, until)
        while self.seconds < stop:
            self.step()


def _common(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields both pipelines share: model size, optimiser, seed."""
    return dict(
        embedding_dim=args.embedding_dim,
        hidden_size=args.hidden_size,
        optimizer="adam",
        lr=args.lr,
        seed=args.seed,
        progress=False,
        device="cpu",
        epochs=1000,
    )


def make_report(args: argparse.Namespace, splits: Any, work: Path) -> Pipeline:
    """The report's pipeline: mode report (stripped, padded to 100), fp32, full softmax."""
    cfg = TrainConfig(out_dir=str(work / "report"), mode="report", batch_size=args.report_batch_size, **_common(args))
    report = Trainer(cfg)
    report.prepare(splits)
    return Pipeline("report", report)


def make_pipelines(args: argparse.Namespace, splits: Any, work: Path) -> list[Pipeline]:
    """The report's pipeline and ours, each a prepared Trainer with the same seed."""
    return [make_report(args, splits, work), make_ours(args, splits, work / "ours", "ours", _common(args))]


def make_ours(args: argparse.Namespace, splits: Any, out_dir: Path, name: str, common: dict[str, Any]) -> Pipeline:
    """Our pipeline as ``args`` configures it; the model is built here for the softmax option."""
    cfg = TrainConfig(
        out_dir=str(out_dir),
        mode="ours",
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        bf16=BF16_FLAG[args.bf16],
        compile=args.compile,
        **common,
    )
    train_texts = list(splits["train"]["text"])
    tok = CharTokenizer.build(prepare_text(t, "ours") for t in train_texts)
    torch.manual_seed(args.seed)
    model = TangPoemLSTM(
        TangPoemConfig(
            vocab_size=len(tok),
            embedding_dim=args.embedding_dim,
            hidden_size=args.hidden_size,
            softmax=args.softmax,
            cutoffs=args.cutoffs,
        )
    )
    model.tokenizer = tok
    ours = Trainer(cfg, base_model=model)
    ours.prepare(splits)
    return Pipeline(name, ours)


ABLATIONS = {  # variant → overrides of our pipeline's flags
    "packed, fp32, full softmax": {"bf16": "off", "softmax": "full"},
    "packed, bf16, full softmax": {"bf16": "on", "softmax": "full"},
    "packed, fp32, adaptive": {"bf16": "off"},
    "packed, bf16, adaptive": {"bf16": "on"},
    "packed, bf16 auto, adaptive (ours)": {},
    "ours, batch 128": {"batch_size": 128},
    "ours, torch.compile": {"compile": True},
}


def ablate(args: argparse.Namespace, splits: Any, work: Path, rounds: int) -> dict[str, float]:
    """Real tokens/s of the report and of each variant of ours, one step of each per round.

    Stepping round-robin puts every variant under the same load; round 0 (allocation, compilation)
    is not counted.
    """
    pipes = [make_report(args, splits, work)]
    for i, (name, over) in enumerate(ABLATIONS.items()):
        variant = argparse.Namespace(**{**vars(args), **over})
        pipes.append(make_ours(variant, splits, work / f"variant{i}", name, _common(variant)))
    start: dict[str, tuple[float, int]] = {}
    for r in range(rounds + 1):
        for pipe in pipes:
            pipe.step()
            if r == 0:
                start[pipe.name] = (pipe.seconds, pipe.real_tokens)
    return {p.name: (p.real_tokens - start[p.name][1]) / (p.seconds - start[p.name][0]) for p in pipes}


def profile_steps(pipe: Pipeline, steps: int) -> str:
    """torch.profiler over a few steps: where a step's time goes, ops sorted by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    pipe.step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            pipe.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14)


def limit_splits(splits: Any, max_train: int | None, max_val: int | None) -> Any:
    """The first poems of each split, for quick runs (the splits are hash-ordered, so unbiased)."""
    out = dict(splits)
    if max_train:
        out["train"] = splits["train"].select(range(min(max_train, len(splits["train"]))))
    if max_val:
        out["validation"] = splits["validation"].select(range(min(max_val, len(splits["validation"]))))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", help="chinese-poetry folder or Hub dataset id (default: $TANGPOEM_CORPUS)")
    p.add_argument("--seconds", type=float, default=120.0, help="training seconds per pipeline [120]")
    p.add_argument("--slice", type=float, default=2.0, help="seconds per turn before switching pipelines [2]")
    p.add_argument("--embedding-dim", type=int, default=512)
    p.add_argument("--hidden-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate for both [2e-3]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="ours: rows per batch [64]")
    p.add_argument("--report-batch-size", type=int, default=64, help="the report's batch (64; smaller for tests)")
    p.add_argument("--seq-len", type=int, default=64, help="ours: tokens per row and step [64]")
    p.add_argument("--softmax", choices=("full", "adaptive"), default="adaptive", help="ours [adaptive]")
    p.add_argument("--cutoffs", type=int, nargs="+", help="ours: adaptive cluster bounds [2000 4000]")
    add_bf16_flag(p, "ours: bf16 output layer")
    p.add_argument("--no-bf16", dest="bf16", action="store_const", const="off", help="the same as --bf16 off")
    p.add_argument("--compile", action="store_true", help="ours: torch.compile the model")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--max-train-poems", type=int, help="train on the first N training poems (quick runs)")
    p.add_argument("--max-val-poems", type=int, help="validate on the first N validation poems")
    p.add_argument("--profile", type=int, default=0, help="also profile this many steps of each pipeline")
    p.add_argument("--json", type=Path, help="write the figures to this JSON file")
    p.add_argument("--ablate", type=int, default=0, help="instead: tokens/s of each variant over this many rounds")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    splits, _ = build_splits(args.corpus)
    splits = limit_splits(splits, args.max_train_poems, args.max_val_poems)
    if args.ablate:
        with tempfile.TemporaryDirectory() as tmp:
            rates = ablate(args, splits, Path(tmp), args.ablate)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.ablate} rounds, one step each")
        print(f"{'pipeline':<32} {'real tok/s':>11} {'× report':>9}")
        for name, rate in rates.items():
            print(f"{name:<32} {rate:>11.0f} {rate / rates['report']:>9.2f}")
        return 0
    val = list(splits["validation"]["text"])
    with tempfile.TemporaryDirectory() as tmp:
        pipes = make_pipelines(args, splits, Path(tmp))
        while any(pipe.seconds < args.seconds for pipe in pipes):
            for pipe in pipes:
                pipe.train_for(args.slice, args.seconds)
        results = {}
        for pipe in pipes:
            model = pipe.trainer.model
            row = {
                "steps": pipe.steps,
                "train_seconds": round(pipe.seconds, 2),
                "real_tokens": pipe.real_tokens,
                "tokens_per_s": pipe.real_tokens / pipe.seconds,
                "last_train_loss": sum(pipe.losses[-5:]) / len(pipe.losses[-5:]),
                "own_val_perplexity": perplexity(model, val),
                "char_val_perplexity": char_perplexity(model, val),
                "char_val_perplexity_folded": char_perplexity(model, val, fold_skipped=True),
            }
            results[pipe.name] = row
        profiles = {pipe.name: profile_steps(pipe, args.profile) for pipe in pipes} if args.profile else {}
    speedup = results["ours"]["tokens_per_s"] / results["report"]["tokens_per_s"]
    bf16 = pipes[1].trainer.bf16
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.seconds:g} s each, seed {args.seed}")
    print(f"native bf16 here: {'yes' if native_bf16(torch.device('cpu')) else 'no'}; --bf16 {args.bf16}")
    print(
        f"ours: batch {args.batch_size} × {args.seq_len} packed, "
        f"{'bf16' if bf16 else 'fp32'} output, {args.softmax} softmax{', compiled' if args.compile else ''}"
    )
    header = f"{'pipeline':<8} {'steps':>6} {'real tok/s':>11} {'own val ppl':>12} {'char val ppl':>13} {'(folded)':>9}"
    print(header)
    for name, r in results.items():
        print(
            f"{name:<8} {r['steps']:>6} {r['tokens_per_s']:>11.0f} {r['own_val_perplexity']:>12.2f} "
            f"{r['char_val_perplexity']:>13.2f} {r['char_val_perplexity_folded']:>9.2f}"
        )
    for name, table in profiles.items():
        print(f"\nprofile, {name}, {args.profile} steps:\n{table}")
    if args.json:
        payload = {"args": {k: v for k, v in vars(args).items() if k != "json"}, "results": results}
        payload["speedup"] = speedup
        payload["bf16_resolved"] = bf16
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    better = results["ours"]["char_val_perplexity"] <= results["report"]["char_val_perplexity"]
    print(f"comparable perplexity: ours {'≤' if better else '>'} report")
    print(f"speedup: {speedup:.2f}")
    return 0 if math.isfinite(speedup) else 1


if __name__ == "__main__":
    sys.exit(main())
