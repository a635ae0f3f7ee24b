"""Train the pure-NumPy LSTM on the same corpus pipeline as the torch trainer, then save it Hub-style.

Data comes from the package, exactly as ``scripts/train.py`` gets it: ``corpus.build_splits``
(cleaning, deterministic splits), ``batching.prepare_text``/``encode_poems``/``make_batches``
(``ours``: packed streams with the state carried from chunk to chunk; ``report``: poems padded to 100)
and a ``CharTokenizer`` built the same way. Only the model, its gradients and the optimiser are NumPy
(:mod:`tangpoem_hf.numpy_lstm`). Validation perplexity is the package's own
(``scoring.perplexity`` on ``to_torch()``), so the two trainers' figures compare directly. The
loss always ignores padding (the torch trainer's ``report`` mode counts it, as the report did).

    python scripts/train_numpy.py --corpus DIR --out-dir runs/numpy [--max-steps 200] [--max-poems 2000]
    python scripts/train_numpy.py --out-dir runs/numpy --resume [--max-steps 400]

Writes ``OUT/vocab.json``, ``OUT/train_log.jsonl`` (one JSON record per step, plus validation
records), ``OUT/model/`` (``save_pretrained`` of ``to_torch()``; load it with
``TangPoemLSTM.from_pretrained``) and prints a sample poem from ``decoding.generate_poem``.

Every ``--checkpoint-every`` steps (and at the end, and on Ctrl-C or SIGTERM, which then exit with
128 + the signal number) it saves ``OUT/checkpoints/step-N/``: ``state.safetensors`` with the
parameters, the optimiser state and the LSTM state carried into the next chunk, and ``meta.json``
with the step, the training seconds, the dropout RNG state, the number of log lines written and
the arguments. Each one is written into a temporary folder and renamed, and only then does
``latest.json`` point at it, so a kill at any moment leaves the previous checkpoint usable; the
last two are kept. ``--resume`` continues from the latest one: flags not given come from it (pass
``--max-steps`` or ``--epochs`` to go further), those that shape the model or the data must not
change, and the log is cut back to what it held at the checkpoint. On CPU the resumed run ends
with exactly the weights of an uninterrupted one (the batches are a function of the step; with
``--lr-schedule cosine`` keep ``--max-steps`` as well). An output folder that already holds a
checkpoint is refused without ``--resume``.

On a machine shared with other busy processes, ``OPENBLAS_NUM_THREADS=1`` gives steadier (often
faster) steps: each time step's small matmul otherwise waits for a descheduled second BLAS thread
(see docs/reports/numpy-lstm-benchmark.md).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tangpoem_hf.batching import encode_poems, make_batches, prepare_text
from tangpoem_hf.checkpointing import (
    Progress,
    RunLog,
    has_checkpoint,
    load_latest,
    save_checkpoint,
    step_record,
    stop_requests,
)
from tangpoem_hf.corpus import build_splits
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.errors import TangPoemError
from tangpoem_hf.modeling import TangPoemConfig
from tangpoem_hf.numpy_lstm import SGD, Adagrad, Adam, NumpyLSTM, clip_grad_norm
from tangpoem_hf.scoring import perplexity
from tangpoem_hf.tokenizer import CharTokenizer
from tangpoem_hf.train_config import DEFAULT_LR

OPTIMIZERS = {"adam": Adam, "adagrad": Adagrad, "sgd": SGD}
# what fixes the vocabulary, the parameter shapes, the optimiser state and the batches: a resume keeps them
FIXED_ARGS = ("mode", "min_freq", "max_poems", "embedding_dim", "hidden_size", "num_layers", "tie_weights", "dtype",
              "optimizer", "batch_size", "seq_len", "seed")  # fmt: skip


def parse_args(argv: list[str] | None, defaults: dict | None = None) -> argparse.Namespace:
    """The command line; ``defaults`` (a checkpoint's arguments on --resume) replace the built-in defaults."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", help="chinese-poetry folder or Hub dataset id (default: $TANGPOEM_CORPUS)")
    p.add_argument("--out-dir", default="runs/numpy")
    p.add_argument("--mode", choices=("ours", "report"), default="ours", help="preprocessing, as the torch trainer")
    p.add_argument("--min-freq", type=int, default=1)
    p.add_argument("--embedding-dim", type=int, default=512)
    p.add_argument("--hidden-size", type=int, default=512)
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--tie-weights", action="store_true")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    p.add_argument("--lr", type=float, help="default: the torch trainer's default for the optimiser")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip (0: off)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=64, help="chunk length in 'ours' mode")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--time-budget", type=float, help="stop after this many seconds of training")
    p.add_argument("--max-poems", type=int, help="train on the first N training poems only (quick runs)")
    p.add_argument("--max-val-poems", type=int, default=500, help="validation poems scored (0: all)")
    p.add_argument("--eval-every", type=int, default=0, help="steps between validations (0: once per epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-first", default="春", help="first character of the sample poem")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (0: only the last)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out-dir")
    p.set_defaults(**(defaults or {}))
    return p.parse_args(argv)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out_dir)
    ckpt_dir = out / "checkpoints"
    found = load_latest(ckpt_dir, numpy=True) if args.resume else None
    if not args.resume and has_checkpoint(ckpt_dir):
        return fail(f"{out} already holds a checkpoint: pass --resume to continue it or pick a new --out-dir.")
    if found is not None:
        saved = found[1]["args"]
        args = parse_args(argv, defaults=saved)
        changed = ["--" + k.replace("_", "-") for k in FIXED_ARGS if getattr(args, k) != saved.get(k)]
        if changed:
            return fail(f"{out} was trained with other {', '.join(changed)}: keep them or pick a new --out-dir.")
    out.mkdir(parents=True, exist_ok=True)
    try:
        splits, _ = build_splits(args.corpus)
    except TangPoemError as exc:
        return fail(str(exc))
    train_texts = list(splits["train"]["text"])[: args.max_poems]
    val_texts = list(splits["validation"]["text"])[: args.max_val_poems or None]

    tok = CharTokenizer.build((prepare_text(t, args.mode) for t in train_texts), args.min_freq)
    tok.save(out)
    poems = encode_poems(train_texts, tok, args.mode)
    batches = make_batches(poems, args.mode, args.batch_size, args.seq_len, tok.pad_id, args.seed)
    config = TangPoemConfig(
        vocab_size=len(tok),
        embedding_dim=args.hidden_size if args.tie_weights else args.embedding_dim,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        dropout=args.dropout,
        tie_weights=args.tie_weights,
        pad_token_id=tok.pad_id,
        preprocessing=args.mode,
    )
    model = NumpyLSTM(config, dtype=np.dtype(args.dtype), seed=args.seed)
    model.tokenizer = tok
    base_lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    opt = OPTIMIZERS[args.optimizer](model.params, lr=base_lr)

    spe = batches.steps_per_epoch
    total = args.epochs * spe if args.max_steps is None else min(args.epochs * spe, args.max_steps)
    print(
        f"{len(train_texts)} training poems, {len(val_texts)} validation poems, vocabulary {len(tok)}; "
        f"{spe} steps per epoch, {total} steps; {args.optimizer} lr {base_lr:g}, {args.dtype}"
    )

    def lr_at(step: int) -> float:
        if args.lr_schedule == "cosine":
            return base_lr * 0.5 * (1 + math.cos(math.pi * min(step / max(total, 1), 1.0)))
        return base_lr

    def validate(step: int, epoch: int) -> None:
        val = perplexity(model.to_torch(), val_texts)
        log.write({"epoch": epoch, "step": step, "val_perplexity": round(val, 3), "elapsed_s": round(elapsed, 2)})
        tqdm.write(f"[val] epoch {epoch} step {step}: perplexity {val:.2f}")

    def checkpoint() -> None:
        nonlocal saved_at
        arrays = {f"param.{name}": p for name, p in model.params.items()}
        arrays |= {f"opt.{key}": a for key, a in opt.state_dict().items()}
        if carried is not None and batches.carry_state:
            arrays["carry.h"], arrays["carry.c"] = carried
        rng = model.rng.bit_generator.state
        meta = {"step": step, "elapsed_s": elapsed, "log_lines": log.lines, "rng": rng, "args": vars(args)}
        save_checkpoint(ckpt_dir, step, arrays, meta, keep=2)
        saved_at = step

    elapsed, carried, step = 0.0, None, 0
    log = RunLog(out / "train_log.jsonl")
    if found is None:
        log.start()
    else:  # everything as it was at the checkpoint; later log records are redone
        arrays, meta = found
        for name, p in model.params.items():
            p[...] = arrays[f"param.{name}"]
        opt.load_state_dict({key[4:]: a for key, a in arrays.items() if key.startswith("opt.")})
        carried = (arrays["carry.h"], arrays["carry.c"]) if "carry.h" in arrays else None
        model.rng.bit_generator.state = meta["rng"]
        step, elapsed = meta["step"], meta["elapsed_s"]
        log.start(resume_lines=meta["log_lines"])
        print(f"Resumed from step {step}.")
    saved_at = step
    bar = Progress(total, step, "train (numpy)", not args.no_progress)
    with stop_requests() as stop:
        while step < total and (args.time_budget is None or elapsed < args.time_budget) and not stop:
            epoch, in_epoch = divmod(step, spe)
            if in_epoch == 0:
                carried = None
            t0 = time.perf_counter()
            x, y = (t.numpy() for t in batches.get(epoch, in_epoch))
            opt.lr = lr_at(step)
            res = model.loss_and_grads(x, y, carried if batches.carry_state else None)
            if args.clip:
                clip_grad_norm(res.grads, args.clip)
            opt.step(res.grads)
            carried = res.state
            step += 1
            dt = time.perf_counter() - t0
            elapsed += dt
            record = step_record(epoch + 1, step, res.loss, res.tokens, dt, opt.lr, elapsed)
            log.write(record)
            bar.update(record, res.tokens, last=step == total)
            if (args.eval_every and step % args.eval_every == 0) or step % spe == 0:
                validate(step, epoch + 1)
            if args.checkpoint_every and step % args.checkpoint_every == 0:
                checkpoint()
        bar.close()
        if saved_at != step:
            checkpoint()
        if stop:
            print(f"Interrupted: checkpoint saved at step {step}; continue with --resume.")
            return 128 + stop[0]
        if step % spe and not (args.eval_every and step % args.eval_every == 0):
            validate(step, step // spe + 1)

    tmodel = model.to_torch()
    tmodel.save_pretrained(out / "model")
    info = {"args": vars(args), "steps": step, "train_seconds": round(elapsed, 1), "config": asdict(config)}
    (out / "model" / "training.json").write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"saved {out / 'model'} ({step} steps, {elapsed:.1f} s of training)")
    try:
        poem = generate_poem(tmodel, first=args.sample_first, form=5, lines=4, seed=args.seed)
        print(poem.text)
    except TangPoemError as exc:  # e.g. the first character is not in a small run's vocabulary
        print(f"(no sample poem: {exc})")
    if args.time_budget is not None and elapsed >= args.time_budget:
        print(f"Stopped at step {step}: the time budget of {args.time_budget:g} s of training is spent.")
    elif args.max_steps is not None and step >= args.max_steps:
        print(f"Stopped at step {step}: --max-steps {args.max_steps}.")
    else:
        print(f"Stopped at step {step}: the end of epoch {args.epochs} (--epochs {args.epochs}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
