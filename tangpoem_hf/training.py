"""The training loop behind ``scripts/train.py`` and ``tangpoem train``.

Everything a run needs to continue lives in its output folder: ``vocab.json`` (ids never change),
``checkpoints/`` (weights, optimiser state, RNG and carried LSTM state, all safetensors + JSON,
written to a temporary folder and renamed, so a kill never leaves a half-written one),
``train_log.jsonl``, ``best/`` (the best validation model, via ``save_pretrained``) and
``curves.png``. ``--resume`` continues bit-exactly from the last checkpoint on CPU.

:func:`keep_portable` copies a run small enough to commit (the weights in fp16, no optimiser state);
``--resume`` on that copy continues the run on another machine, its learning rate warmed up again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .averaging import PREFIX as AVERAGE_PREFIX
from .averaging import WeightAverage
from .batching import make_batches
from .checkpointing import (
    Progress,
    RunLog,
    has_checkpoint,
    load_latest,
    optimizer_tensors,
    restore_optimizer,
    save_checkpoint,
    step_record,
    stop_requests,
)
from .corpus import SPLIT_VERSION, build_splits
from .errors import InputError
from .modeling import IGNORE_INDEX, TangPoemLSTM, mean_start_state
from .paths import portable_record
from .scoring import token_losses
from .train_config import REFERENCE_BATCH, REGULARISATION, TrainConfig, check_same_run, resolve_bf16, resolve_device
from .train_data import prepare_data


class TrainerCallback(Protocol):
    """Something the run does besides training (e.g. :class:`tangpoem_hf.hub.PushToHubCallback`)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None: ...

    def on_train_end(self, trainer: Trainer, summary: dict[str, Any]) -> None: ...


# A portable copy keeps these tensors (the optimiser's moments and the average are restarted); and
# since Adam's restarted moments make its first steps as large as the rate, the rate warms up again.
PORTABLE_KEPT = ("model.", "carry.", "rng.")
REWARM_STEPS = 100


def keep_portable(run_dir: str | Path, dest: str | Path, optimizer: bool = False) -> int:
    """Copy ``run_dir`` into ``dest`` small enough to commit: its files (config, log, vocabulary) and
    its latest checkpoint's weights in fp16. Returns the step.

    Without ``optimizer`` the optimiser state and the average are left out and restart on resume.
    With it the optimiser state is kept in bf16 (Adam's squared gradients need its range) and the
    average, a copy of the weights, in fp16 like them, so the run goes on with the step sizes it had:
    where the accumulated state *is* the experiment (Adagrad), a restart would change it.
    Why at all: ``runs/`` lives only as long as the machine; a full checkpoint is four times the weights.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    found = load_latest(run_dir / "checkpoints")
    if found is None:
        raise InputError(f"{run_dir} holds no checkpoint to keep: train it for a few steps first.")
    tensors, meta = found
    dest.mkdir(parents=True, exist_ok=True)
    for f in run_dir.iterdir():
        if f.is_file():
            shutil.copy2(f, dest / f.name)
    small = {}
    for name, t in tensors.items():
        weights = name.startswith("model.") or (optimizer and name.startswith(AVERAGE_PREFIX))  # the average too
        if weights and t.is_floating_point():
            small[name] = t.half()
        elif name.startswith("opt.") and optimizer:
            small[name] = t.bfloat16() if t.is_floating_point() and t.dim() else t  # step counters stay exact
        elif name.startswith(PORTABLE_KEPT):
            small[name] = t
    if optimizer:
        meta = {**meta, "kept_rounded": meta["step"]}
    else:
        meta = {**meta, "optimizer": None, "average_updates": 0, "rewarm_from": meta["step"]}
    shutil.rmtree(dest / "checkpoints", ignore_errors=True)
    save_checkpoint(dest / "checkpoints", meta["step"], small, meta, keep=1)
    return meta["step"]


def make_optimizer(
    name: str, params: list[torch.nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    fused = {"fused": True} if params and params[0].is_cuda else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **fused)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    raise InputError(f"optimizer must be adam, adamw, adagrad or sgd, not {name!r}.")


# --- the run ------------------------------------------------------------------------------------


class Trainer:
    """One training run; construct, then :meth:`run`."""

    def __init__(
        self,
        cfg: TrainConfig,
        base_model: TangPoemLSTM | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ) -> None:
        """``callbacks`` default to a Hub push when ``cfg.push_to_hub`` names a repo."""
        self.cfg = cfg
        if callbacks is None and cfg.push_to_hub:
            from .hub import PushToHubCallback

            callbacks = [PushToHubCallback(cfg.push_to_hub, private=cfg.private, every_epoch=cfg.push_every_epoch)]
        self.callbacks = list(callbacks or [])
        self.out = Path(cfg.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = resolve_device(cfg.device)
        self.bf16 = resolve_bf16(cfg.bf16, self.device)  # recorded as bf16_resolved beside the config
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.main = self.rank == 0
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.base_model = base_model
        # The splits whose training poems the model has read: a run continuing a model trained on an
        # older split joins its version (see corpus.never_trained_on), and best/training.json says so.
        self.split_version = SPLIT_VERSION
        self.log = RunLog(self.out / "train_log.jsonl", enabled=self.main)
        self._stop: list[int] = []  # signals received; filled while run() is in progress

    # DDP: rank 0 first, every rank out together ---------------------------------------------------

    @contextlib.contextmanager
    def _main_first(self):
        """Rank 0 first, the others after it: they then read the caches it wrote (cleaned corpus,
        ``datasets`` arrow files) instead of writing the same files at the same time."""
        if self.world > 1 and not self.main:
            dist.barrier()
        yield
        if self.world > 1 and self.main:
            dist.barrier()

    def _leave_group(self) -> None:
        """Wait for every rank (rank 0 still saves and plots), then drop DDP and close the process
        group while the interpreter is whole: DDP's reducer keeps the group's last work (tensors with
        Python references) alive, and freeing it at interpreter exit can abort the rank in gloo."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            self.forward, self.ddp = self.model, None
            dist.destroy_process_group()

    # data and model ---------------------------------------------------------------------------

    def prepare(self, splits: Any | None = None) -> None:
        """Data (:func:`~tangpoem_hf.train_data.prepare_data`), model, batches and optimiser; ``splits``
        defaults to ``cfg.corpus``'s."""
        cfg = self.cfg
        if splits is None:
            with self._main_first():
                splits, _ = build_splits(cfg.corpus, simplified=cfg.simplified, dynasties=cfg.dynasties)
        base_tokenizer = self.base_model.tokenizer if self.base_model is not None else None
        self.data = prepare_data(cfg, splits, self.out, base_tokenizer, self.main, self._main_first)
        self.tokenizer = self.data.tokenizer
        torch.manual_seed(cfg.seed)
        if self.base_model is not None:
            self.model = self.base_model
            self.model.set_regularisation(**{name: getattr(cfg, name) for name in REGULARISATION})
        else:
            # The vocabulary decides: a run folder's vocab.json from before controls has none.
            config = replace(cfg, control=self.data.control).model_config(len(self.tokenizer), self.tokenizer.pad_id)
            self.model = TangPoemLSTM(config)
        self.model.tokenizer = self.tokenizer
        learned = self.model.config.start_state == "learned"
        self.batches = make_batches(
            self.data.train,
            cfg.mode,
            cfg.batch_size,
            cfg.seq_len,
            self.tokenizer.pad_id,
            cfg.seed,
            self.rank,
            self.world,
            learned,
        )
        # A model trained on packed streams starts poems from the mean state at <bos> over a fixed
        # sample of training poems, refreshed before every validation and so stored with best/.
        if self.batches.carry_state and self.model.config.start_state == "zeros":  # an older base model
            self.model.set_start_state(*mean_start_state(self.model, self.data.start_sample))
        self.model.to(self.device).train()
        if cfg.freeze_embedding:
            if self.model.config.tie_weights:
                raise InputError("--freeze-embedding would freeze the output layer too: the model ties their weights.")
            self.model.embed.weight.requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.average = WeightAverage(self.model, cfg.average) if cfg.average else None
        self.base_lr = cfg.resolved_lr(self.world)
        if self.main and cfg.lr is None and cfg.batch_size * self.world != REFERENCE_BATCH:
            print(
                f"Learning rate {self.base_lr:.3g}: the {cfg.optimizer} default for a global batch of "
                f"{cfg.batch_size * self.world}."
            )
        self.optimizer = make_optimizer(cfg.optimizer, self.params, self.base_lr, cfg.weight_decay)
        self.total_steps = cfg.epochs * self.batches.steps_per_epoch
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.ddp = (
            torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
            if self.world > 1
            else None
        )
        self.forward = self.ddp or self.model
        if cfg.compile:
            self.forward = torch.compile(self.forward)

    # state ------------------------------------------------------------------------------------

    def _state_tensors(self, carried: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if self.model.config.tie_weights:
            tensors.pop("model.head.weight")
        opt_tensors, self._opt_meta = optimizer_tensors(self.optimizer)
        tensors.update(opt_tensors)
        if self.average is not None:
            tensors.update(self.average.state_tensors())
        tensors["rng.torch"] = torch.get_rng_state()
        if carried is not None:
            tensors["carry.h"], tensors["carry.c"] = (t.detach().float().cpu().contiguous() for t in carried)
        return tensors

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
        model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        if self.model.config.tie_weights:
            model_sd["head.weight"] = model_sd["embed.weight"]
        self.model.load_state_dict(model_sd, strict=True)
        portable = meta["optimizer"] is None  # a portable copy: the optimiser and the average start afresh
        if not portable:
            restore_optimizer(self.optimizer, tensors, meta["optimizer"])
        if self.average is not None and portable:
            self.average = WeightAverage(self.model, self.cfg.average)
        elif self.average is not None:
            self.average.load(tensors, meta["average_updates"])
        self.rewarm_from = meta.get("rewarm_from")
        torch.set_rng_state(tensors["rng.torch"])
        self.history = meta["history"]
        self.best_val = meta["best_val"]
        self.elapsed = meta["elapsed"]
        if "carry.h" in tensors:
            rows = slice(self.rank * self.cfg.batch_size, (self.rank + 1) * self.cfg.batch_size)
            return tensors["carry.h"][:, rows].to(self.device), tensors["carry.c"][:, rows].to(self.device)
        return None

    def _checkpoint(self, step: int, carried: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        if self.world > 1 and carried is not None:  # every rank's rows, so any world size can resume
            carried = tuple(_gather_rows(t, self.world) for t in carried)
        if not self.main:
            return
        tensors = self._state_tensors(carried)
        meta = {
            "step": step,
            "log_lines": self.log.lines,
            "optimizer": self._opt_meta,
            "history": self.history,
            "best_val": self.best_val,
            "elapsed": self.elapsed,
            "average_updates": self.average.updates if self.average is not None else 0,
            "rewarm_from": self.rewarm_from,
            "config": asdict(self.cfg),
            "bf16_resolved": self.bf16,
        }
        save_checkpoint(self.ckpt_dir, step, tensors, meta, self.cfg.keep_checkpoints)

    # loop -------------------------------------------------------------------------------------

    def train_step(
        self, x: torch.Tensor, y: torch.Tensor, carried: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """One optimiser step on a batch: the (detached) loss and the LSTM state to carry into the next."""
        cfg = self.cfg
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.forward(x, labels=y, state=carried if self.batches.carry_state else None)
        loss = out.loss
        penalty: torch.Tensor | float = 0.0  # AWD-LSTM's AR/TAR on the last layer's outputs; not logged
        if cfg.ar or cfg.tar:
            h = out.hidden.float()
            penalty = cfg.ar * h.pow(2).mean() + cfg.tar * (h[:, 1:] - h[:, :-1]).pow(2).mean()
        if cfg.mode == "report":  # the report's loss counts the padding too
            loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), y.flatten())
        elif self.world > 1:
            # Ranks hold different numbers of real targets (control positions and padding are not
            # targets) and DDP averages their gradients: weigh each rank's mean by its share, so a
            # step is the mean over the global batch, as in one process.
            count = ((y != self.tokenizer.pad_id) & (y != IGNORE_INDEX)).sum().float()
            total = count.clone()
            dist.all_reduce(total)
            loss = loss * (count * self.world / total.clamp(min=1.0))
        self.optimizer.zero_grad(set_to_none=True)
        (loss + penalty).backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.clip)
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.model)
        carried = tuple(s.detach() for s in out.state) if self.batches.carry_state else None
        return loss.detach(), carried

    def _lr_at(self, step: int) -> float:
        lr = self.base_lr
        if self.cfg.warmup_steps:
            lr *= min(1.0, (step + 1) / self.cfg.warmup_steps)
        if self.cfg.lr_schedule == "cosine":
            lr *= 0.5 * (1 + math.cos(math.pi * min(step / max(self.total_steps, 1), 1.0)))
        if self.rewarm_from is not None:
            lr *= min(1.0, (step - self.rewarm_from + 1) / REWARM_STEPS)
        return lr

    def evaluate(self, theme: bool = True) -> dict[str, float]:
        """Validation perplexity from the start state the model will generate from: without a
        theme (a control model reads the form alone), and for a control model also with each
        poem's title and keywords (``val_perplexity_theme``), and on up to ``train_data.MONITORED``
        poems of each other dynasty's validation slice (``song_validation_perplexity``);
        ``theme=False`` gives the first alone. Control tokens are never targets."""
        if self.batches.carry_state:
            self.model.set_start_state(*mean_start_state(self.model, self.data.start_sample))
        total, count = token_losses(self.model, self.data.val_texts)
        result = {"val_perplexity": math.exp(total / max(count, 1))}
        if self.data.control and theme:
            total, count = token_losses(self.model, self.data.val_texts, controls=self.data.val_controls)
            result["val_perplexity_theme"] = math.exp(total / max(count, 1))
        for name, texts in self.data.monitored.items() if theme else ():
            total, count = token_losses(self.model, texts)
            result[f"{name}_perplexity"] = math.exp(total / max(count, 1))
        return result

    def _evals_since_best(self) -> int:
        """Validations since the best one; rebuilt from the history, so it survives --resume."""
        best, since = math.inf, 0
        for entry in self.history:
            if entry["val_perplexity"] < best:
                best, since = entry["val_perplexity"], 0
            else:
                since += 1
        return since

    def _should_stop_early(self) -> bool:
        """Rank 0 decides (only it validates) and tells the others, so DDP ranks stop together."""
        if not self.cfg.patience:
            return False
        flag = torch.tensor([float(self.main and self._evals_since_best() >= self.cfg.patience)])
        if self.world > 1:
            flag = flag.to(self.device)
            dist.broadcast(flag, 0)
        return bool(flag.item())

    def _resume(self) -> tuple[int, tuple[torch.Tensor, torch.Tensor] | None]:
        """Restore the latest checkpoint of this run folder: the step and the carried LSTM state."""
        found = load_latest(self.ckpt_dir)
        if found is None:
            raise InputError(f"{self.out} holds no checkpoint to resume: start the run without --resume.")
        check_same_run(found[1].get("config", {}), self.cfg, self.out)
        carried = self._restore(*found)
        step = found[1]["step"]
        self.log.start(resume_lines=found[1].get("log_lines", 0))
        if self.main:
            if self.rewarm_from == step:
                how = " (a portable copy: the optimiser restarts)"
            elif found[1].get("kept_rounded") == step:
                how = " (a kept copy: weights and their average in fp16, the optimiser's state in bf16)"
            else:
                how = ""
            print(f"Resumed from step {step}{how}.")
        return step, carried

    def _stop_reason(self, step: int, stopped_early: bool) -> str:
        """One sentence on why the run ended where it did, for the last line of its output."""
        cfg = self.cfg
        if stopped_early:
            return (
                f"Stopped early at step {step}: no better validation perplexity in {cfg.patience} "
                f"evaluations (--patience {cfg.patience})."
            )
        if cfg.time_budget is not None and self.elapsed >= cfg.time_budget:
            return f"Stopped at step {step}: the time budget of {cfg.time_budget:g} s of training is spent."
        if cfg.max_steps is not None and step >= cfg.max_steps:
            return f"Stopped at step {step}: --max-steps {cfg.max_steps}."
        return f"Stopped at step {step}: the end of epoch {cfg.epochs} (--epochs {cfg.epochs})."

    def run(self, resume: bool = False) -> dict:
        """Train to the end (or budget), save ``best/`` and ``curves.png``; return a summary.

        The summary's ``stopped_by`` says in one sentence what ended the run.
        """
        cfg = self.cfg
        if not resume and self.main and has_checkpoint(self.ckpt_dir):  # before the slow preparation
            raise InputError(f"{self.out} already holds a run: pass --resume to continue it or pick a new --out-dir.")
        if not hasattr(self, "model"):
            self.prepare()
        self.history: list[dict] = []
        self.best_val = math.inf
        self.elapsed = 0.0
        self.rewarm_from: int | None = None  # the step a portable copy resumed at
        step, carried = self._resume() if resume else (0, None)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            recorded = {**asdict(cfg), "bf16_resolved": self.bf16}
            (self.out / "train_config.json").write_text(json.dumps(recorded, indent=2, ensure_ascii=False))
            if not resume:
                self.log.start()
        bar = Progress(self.total_steps, step, "train", cfg.progress and self.main)
        spe = self.batches.steps_per_epoch
        stopped_early = self._should_stop_early()
        with stop_requests() as self._stop:
            try:
                while step < self.total_steps and not stopped_early:
                    if cfg.time_budget is not None and self.elapsed >= cfg.time_budget:
                        break
                    epoch, in_epoch = divmod(step, spe)
                    if in_epoch == 0:
                        carried = None
                    t0 = time.perf_counter()
                    x, y = self.batches.get(epoch, in_epoch)
                    if self.device.type == "cuda":  # page-locked, so the copy overlaps the last step's kernels
                        x, y = x.pin_memory(), y.pin_memory()
                    x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                    for group in self.optimizer.param_groups:
                        group["lr"] = self._lr_at(step)
                    loss, carried = self.train_step(x, y, carried)
                    step += 1
                    dt = time.perf_counter() - t0
                    self.elapsed += dt
                    real = int(((y != self.tokenizer.pad_id) & (y != IGNORE_INDEX)).sum()) * self.world
                    loss_value = float(loss)
                    if self.world > 1:  # log the global mean, and stop on every rank if any rank must
                        flags = torch.tensor([loss_value, float(bool(self._stop))], device=self.device)
                        dist.all_reduce(flags)
                        loss_value = float(flags[0]) / self.world
                        if flags[1] > 0 and not self._stop:
                            self._stop.append(signal.SIGTERM)
                        if cfg.time_budget is not None:  # one clock for all ranks, so they stop together
                            clock = torch.tensor([self.elapsed], device=self.device)
                            dist.all_reduce(clock, op=dist.ReduceOp.MAX)
                            self.elapsed = float(clock)
                    record = step_record(epoch + 1, step, loss_value, real, dt, self._lr_at(step - 1), self.elapsed)
                    self.write_log(record)
                    bar.update(record, real)
                    end_of_epoch = step % spe == 0
                    if (cfg.eval_every and step % cfg.eval_every == 0) or end_of_epoch or step == self.total_steps:
                        self._validate(step, epoch + 1)
                        stopped_early = self._should_stop_early()
                        if end_of_epoch and self.main:
                            for callback in self.callbacks:
                                callback.on_epoch_end(self, epoch + 1)
                    if step % cfg.checkpoint_every == 0 or step == self.total_steps:
                        self._checkpoint(step, carried)
                    if self._stop:
                        break
                out_of_time = cfg.time_budget is not None and self.elapsed >= cfg.time_budget
                if self._stop or out_of_time or stopped_early:
                    if not self.history or self.history[-1]["step"] != step:
                        self._validate(step, step // spe + 1)
                    self._checkpoint(step, carried)
            finally:
                bar.close()
        if self._stop:
            self._leave_group()
            if self.main:
                print(f"Interrupted: checkpoint saved at step {step}; continue with --resume.")
            raise KeyboardInterrupt
        summary = {
            "steps": step,
            "best_val_perplexity": self.best_val,
            "train_seconds": round(self.elapsed, 3),  # to the ms: equal-time runs take it as their budget
            "stopped_early": stopped_early,
            "stopped_by": self._stop_reason(step, stopped_early),
        }
        if self.main:
            from .plotting import plot_curves

            plot_curves(self.out / "train_log.jsonl", self.history, self.out / "curves.png")
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
            for callback in self.callbacks:
                callback.on_train_end(self, summary)
        self._leave_group()
        return summary

    def write_log(self, record: dict) -> None:
        """Log a step's record (after its optimiser step) or a validation's; only the main process logs.

        A subclass may add fields first: for validations they are also kept in the checkpointed history.
        """
        self.log.write(record)

    def _validate(self, step: int, epoch: int) -> None:
        if self.world > 1:
            dist.barrier()
        found = self._evaluate_averaged() if self.main else {"val_perplexity": math.nan}
        val = found["val_perplexity"]
        entry = {"epoch": epoch, "step": step, **{k: round(v, 3) for k, v in found.items()}}
        entry["elapsed_s"] = round(self.elapsed, 2)
        self.history.append(entry)
        if not self.main:
            return
        self.write_log(entry)
        tqdm.write(f"[val] epoch {epoch} step {step}: perplexity {val:.2f}")
        if val < self.best_val:
            self.best_val = val
            with self.average.applied(self.model) if self.average is not None else contextlib.nullcontext():
                self.save_model(self.out / "best", extra={"val_perplexity": round(val, 3), "step": step})

    def _evaluate_averaged(self) -> dict[str, float]:
        """:meth:`evaluate`, of the averaged weights when the run keeps an average (they are what
        best/ saves); the raw weights' figure is logged beside it as ``val_perplexity_raw``."""
        if self.average is None:
            return self.evaluate()
        raw = self.evaluate(theme=False)["val_perplexity"]
        with self.average.applied(self.model):
            return {**self.evaluate(), "val_perplexity_raw": raw}

    def save_model(self, folder: Path, extra: dict | None = None) -> None:
        """save_pretrained into a temporary folder, then swap it in."""
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp)
        info = {
            "train_config": portable_record(asdict(self.cfg)),  # the model travels; this machine's paths do not
            "bf16_resolved": self.bf16,
            "train_seconds": round(self.elapsed, 1),
            "split": self.split_version,
            **(extra or {}),
        }
        (tmp / "training.json").write_text(json.dumps(info, indent=2, ensure_ascii=False))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)


def _gather_rows(t: torch.Tensor, world: int) -> torch.Tensor:
    """Concatenate each rank's (layers, batch, hidden) state along the batch axis."""
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=1)
