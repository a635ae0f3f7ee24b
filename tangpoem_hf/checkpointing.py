"""What makes a run resumable and visible, shared by the torch trainer and ``scripts/train_numpy.py``.

Checkpoints are safetensors (tensors or NumPy arrays) + JSON, never pickles, written into a hidden
temporary folder and renamed, and only then named by ``latest.json``, so a kill at any moment
leaves the previous checkpoint usable. The JSON Lines log is cut back to what it held at the
checkpoint on resume, so each step is logged once. SIGINT and SIGTERM only ask the loop to stop
between two steps, so the last step is always in the checkpoint written on the way out. Both
trainers log the same step record and show the same progress bar.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
import safetensors.torch
import torch
from tqdm.auto import tqdm

LATEST = "latest.json"
STATE_NAME = "state.safetensors"
META_NAME = "meta.json"


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: a reader sees the old or the new file, never half."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def has_checkpoint(ckpt_dir: Path) -> bool:
    return (Path(ckpt_dir) / LATEST).exists()


def save_checkpoint(ckpt_dir: Path, step: int, tensors: Mapping[str, Any], meta: dict, keep: int = 2) -> Path:
    """Write ``step-N/`` (torch tensors or NumPy arrays, not mixed) and point ``latest.json`` at it.

    Kept: the ``keep`` newest checkpoints up to this step. Dropped: older ones, leftovers of a killed
    save, and checkpoints after this step (written by a run this one resumed before they were made).
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"step-{step}"
    tmp = ckpt_dir / f".{name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if tensors and all(isinstance(v, np.ndarray) for v in tensors.values()):
        safetensors.numpy.save_file(dict(tensors), str(tmp / STATE_NAME))
    else:
        safetensors.torch.save_file(dict(tensors), str(tmp / STATE_NAME))
    (tmp / META_NAME).write_text(json.dumps(meta), encoding="utf-8")
    for f in tmp.iterdir():  # the contents reach the disk before the rename makes them visible
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    shutil.rmtree(ckpt_dir / name, ignore_errors=True)
    os.replace(tmp, ckpt_dir / name)
    write_atomic(ckpt_dir / LATEST, json.dumps({"checkpoint": name}))
    steps = sorted(int(d.name[5:]) for d in ckpt_dir.glob("step-*") if d.is_dir())
    older = [n for n in steps if n < step]
    stale = older[: max(len(older) - (keep - 1), 0)] + [n for n in steps if n > step]
    for d in [ckpt_dir / f"step-{n}" for n in stale] + list(ckpt_dir.glob(".step-*.tmp*")):
        shutil.rmtree(d, ignore_errors=True)
    return ckpt_dir / name


def load_latest(ckpt_dir: Path, numpy: bool = False) -> tuple[dict[str, Any], dict] | None:
    """The tensors (or arrays) and metadata that ``latest.json`` names, or None without a checkpoint."""
    pointer = Path(ckpt_dir) / LATEST
    if not pointer.exists():
        return None
    folder = Path(ckpt_dir) / json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
    loader = safetensors.numpy.load_file if numpy else safetensors.torch.load_file
    return loader(str(folder / STATE_NAME)), json.loads((folder / META_NAME).read_text(encoding="utf-8"))


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """A torch optimiser's state as safetensors tensors (``opt.<param>.<key>``) and the JSON rest."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: dict) -> None:
    """Load what :func:`optimizer_tensors` wrote back into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, extra in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(extra)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class RunLog:
    """``train_log.jsonl``: one JSON record per line, appended as the run goes.

    ``lines`` is stored in each checkpoint; a resume cuts the file back to it, so records of the
    steps it redoes (and a line cut short by a kill) are forgotten.
    """

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.lines = 0

    def start(self, resume_lines: int | None = None) -> None:
        """A fresh log, or (resuming) the first ``resume_lines`` lines of the old one."""
        if not self.enabled:
            return
        if resume_lines is None:
            self.path.write_text("", encoding="utf-8")
            self.lines = 0
            return
        old = self.path.read_text(encoding="utf-8").splitlines(keepends=True) if self.path.exists() else []
        write_atomic(self.path, "".join(old[:resume_lines]))
        self.lines = min(resume_lines, len(old))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.lines += 1


def step_record(epoch: int, step: int, loss: float, tokens: int, seconds: float, lr: float, elapsed: float) -> dict:
    """One training step as the log stores it (``tokens``: real tokens, no padding)."""
    return {
        "epoch": epoch,
        "step": step,
        "loss": round(loss, 5),
        "perplexity": round(math.exp(min(loss, 50)), 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "lr": lr,
        "elapsed_s": round(elapsed, 2),
    }


class Progress:
    """The progress bar: loss and perplexity of the last step, tokens/s over the last ten."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool) -> None:
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, desc=desc)
        self.tokens, self.since = 0, time.perf_counter()

    def update(self, record: dict, tokens: int, last: bool = False) -> None:
        self.bar.update(1)
        self.tokens += tokens
        if record["step"] % 10 == 0 or last:
            now = time.perf_counter()
            rate = self.tokens / max(now - self.since, 1e-9)
            self.bar.set_postfix(loss=f"{record['loss']:.3f}", ppl=f"{record['perplexity']:.1f}", tok_s=f"{rate:.0f}")
            self.tokens, self.since = 0, now

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """While open, SIGINT and SIGTERM only note themselves in the list: the loop stops between steps."""
    stop: list[int] = []
    old = {s: signal.signal(s, lambda signum, _frame: stop.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
