"""Training curves as a PNG: people would rather look at a curve than read a log."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    """Training-step records and validation records from a ``train_log.jsonl``."""
    steps, vals = [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        (vals if "val_perplexity" in rec else steps).append(rec)
    return steps, vals


def smooth(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_curves(log_path: Path, history: list[dict] | None, out_png: Path, title: str = "tangpoem training") -> Path:
    """Loss and perplexity against steps, training (smoothed) and validation."""
    steps, vals = read_log(log_path)
    vals = history if history is not None else vals
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(11, 4))
    if steps:
        xs = [r["step"] for r in steps]
        window = max(1, len(xs) // 50)
        loss = smooth([r["loss"] for r in steps], window)
        ax_loss.plot(xs, loss, label="train (smoothed)")
        ax_ppl.plot(xs, [math.exp(v) for v in loss], label="train (smoothed)")
    if vals:
        vx = [r["step"] for r in vals]
        ax_loss.plot(vx, [math.log(r["val_perplexity"]) for r in vals], "o-", label="validation")
        ax_ppl.plot(vx, [r["val_perplexity"] for r in vals], "o-", label="validation")
    ax_loss.set(xlabel="step", ylabel="cross-entropy (nats)", title="loss")
    ax_ppl.set(xlabel="step", ylabel="perplexity", title="perplexity", yscale="log")
    for ax in (ax_loss, ax_ppl):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
