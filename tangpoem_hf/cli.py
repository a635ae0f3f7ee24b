"""``tangpoem`` subcommands: thin wrappers that check arguments and print clean errors.

A :class:`~tangpoem_hf.errors.TangPoemError` becomes one line on stderr and exit code 2; no
traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from .control import MAX_KEYWORDS, MAX_TITLE, Control
from .errors import InputError, TangPoemError
from .text import is_han
from .tokenizer import CharTokenizer

TRAIN_FLAGS = {  # TrainConfig field → help; the flag is --field-with-dashes
    "corpus": "chinese-poetry folder, Hub dataset id or packed corpus (tangpoem data pack) (default: $TANGPOEM_CORPUS)",
    "dynasties": "comma-separated: tang, or tang,song to train on the 全宋诗 too (validation stays Tang's)",
    "tang_weight": "every Tang training poem is read this many times per epoch (with --dynasties tang,song)",
    "out_dir": "run folder: vocab.json, checkpoints/, train_log.jsonl, best/, curves.png",
    "mode": "preprocessing: ours (punctuation, bos/eos, packed) or report (stripped, cut and padded to 100)",
    "min_freq": "drop characters seen fewer times than this from the vocabulary",
    "embedding_dim": "embedding size",
    "hidden_size": "LSTM hidden size",
    "num_layers": "LSTM layers",
    "dropout": "dropout on embeddings and LSTM outputs",
    "weight_drop": "AWD-LSTM DropConnect on the hidden-to-hidden weights (training only)",
    "embed_drop": "drop whole characters from the embedding table (training only)",
    "ar": "activation regularisation: this × mean square of the last layer's outputs",
    "tar": "temporal activation regularisation: this × mean square of their step-to-step change",
    "average": "validate and save an exponential moving average of the weights with this decay (0: none)",
    "start_state": "stored (packed streams; the mean state at <bos> is stored with the model) or learned "
    "(one poem per row, from a learned start state)",
    "softmax": "full, or adaptive (clusters over frequency-sorted characters: faster, see docs/training-speed.md)",
    "optimizer": "adam, adamw, adagrad or sgd",
    "lr": "learning rate (default per optimiser at a global batch of 64: adam 2e-3, adagrad 0.05, sgd 1.0; "
    "scaled by the square root of global batch / 64, linearly for sgd)",
    "lr_schedule": "constant or cosine",
    "warmup_steps": "linear learning-rate warm-up steps (worth a few hundred with large batches)",
    "weight_decay": "weight decay",
    "batch_size": "sequences per batch (per process)",
    "seq_len": "tokens per chunk in packed mode (the report mode always uses 100)",
    "epochs": "epochs (when only --max-steps is given: as many as its steps need)",
    "max_steps": "train this many steps (with --epochs too: stop at whichever comes first)",
    "time_budget": "stop after this many seconds of training",
    "clip": "gradient-norm clipping (0 disables)",
    "seed": "random seed",
    "device": "auto (CUDA when present), cpu or cuda",
    "checkpoint_every": "steps between checkpoints",
    "keep_checkpoints": "how many checkpoints to keep",
    "eval_every": "steps between validations (0: once per epoch)",
    "patience": "stop after this many validations without a better perplexity (0: never stop early)",
    "threads": "torch CPU threads (0: torch's default)",
    "drop_title": "with a control segment: the share of poems (per epoch) that train without their title",
    "drop_keywords": "with a control segment: the share of poems (per epoch) that train without keywords",
    "keyword_min_count": "a 2-gram may be a keyword once the corpus's 五言/七言 lines hold it this often",
}

# Fine-tuning starts from a good model and usually has little data: a quarter of the learning rate
# (adam 5e-4, chosen in finetune.FINETUNE_LR when --lr is not given), early stopping, short runs.
FINETUNE_DEFAULTS = {
    "out_dir": "runs/finetune",
    "epochs": 10,
    "patience": 3,
    "batch_size": 32,
    "checkpoint_every": 50,
}


# Flags that only change how a run reports or uses the machine: a resume may change them.
RESUME_MAY_CHANGE = ("out_dir", "progress", "threads")
BOOL_FLAGS = {  # flag → (TrainConfig field, value of the field when the flag is given, help)
    "traditional": ("simplified", False, "keep the corpus in traditional script"),
    "tie_weights": ("tie_weights", True, "share the embedding and output weights"),
    "locked_dropout": ("locked_dropout", True, "dropout masks shared by all time steps of a sequence (AWD-LSTM)"),
    "bf16": (
        "bf16",
        True,
        "force bf16 autocast (the output layer on CPU; everything on CUDA) [auto: on for CUDA "
        "and CPUs with AVX512-BF16 or AMX, off elsewhere]",
    ),
    "no_bf16": ("bf16", False, "force fp32 (see --bf16)"),
    "compile": ("compile", True, "torch.compile the model"),
    "no_progress": ("progress", False, "no progress bar"),
    "freeze_embedding": ("freeze_embedding", True, "keep the input embedding fixed"),
    "no_control": ("control", False, "no control segment (form, title, keywords) before each poem, as older models"),
}


def _add_train_args(p: argparse.ArgumentParser, overrides: dict | None = None) -> None:
    """The TrainConfig flags; ``overrides`` changes defaults (fine-tuning's are not training's).

    Every flag defaults to None (the TrainConfig default is filled in later), so that a resume can
    tell the flags a user gave from the ones left out.
    """
    from .training import TrainConfig

    types = {f.name: f for f in fields(TrainConfig)}
    defaults = TrainConfig(**(overrides or {}))
    for name, help_text in TRAIN_FLAGS.items():
        default = getattr(defaults, name)
        kind = {"int": int, "float": float}.get(str(types[name].type).split(" ")[0], str)
        if name in ("lr", "time_budget"):
            kind = float
        elif name == "max_steps":
            kind = int
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=f"{help_text} [{default}]")
    for name, (_, _, help_text) in BOOL_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), action="store_true", default=None, help=help_text)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out-dir with its saved configuration (only --no-progress and --threads may change)",
    )
    p.set_defaults(train_defaults=overrides or {})


def _add_finetune_args(p: argparse.ArgumentParser, init_help: str) -> None:
    p.add_argument("--init-from", metavar="DIR_OR_REPO_ID", help=init_help)
    p.add_argument("--base-model-id", help="Hub id of a local base, recorded as base_model in the model card")
    p.add_argument("--author", action="append", default=[], help="keep poems by this poet (repeatable; either script)")
    p.add_argument("--form", action="append", default=[], help="keep 五绝, 七绝, 五律, 七律 or other (repeatable)")
    p.add_argument("--tag", action="append", default=[], help="keep poems with this tag, e.g. 边塞 (repeatable)")
    p.add_argument(
        "--new-chars",
        choices=("grow", "unk"),
        help="characters the base lacks: new ids (grow) or <unk> [grow]",
    )
    p.add_argument("--val-percent", type=int, help="validation share for text files and corpora without one [10]")
    p.add_argument(
        "--replay",
        type=float,
        help="with a filter: mix in this many other corpus poems per selected one, against forgetting [0]",
    )
    p.add_argument(
        "--add-control",
        action="store_true",
        default=None,
        help="teach a base without a control segment to read one (form, title, keywords): new vocabulary rows",
    )
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="at the end, push best/ with its model card to this repo")
    p.add_argument("--private", action="store_true", default=None, help="create the Hub repo as private")
    p.add_argument(
        "--push-every-epoch", action="store_true", help="with --push-to-hub: also push each epoch, in the background"
    )


def _given_train_values(args: argparse.Namespace) -> dict:
    """The TrainConfig fields set by the flags the user actually gave."""
    values = {name: getattr(args, name) for name in TRAIN_FLAGS if getattr(args, name) is not None}
    for name, (target, value, _) in BOOL_FLAGS.items():
        if getattr(args, name):
            values[target] = value
    if args.max_steps is not None and args.epochs is None:  # --max-steps alone means that many steps
        values["epochs"] = args.max_steps
    return values


def _train_config(args: argparse.Namespace, extra: dict | None = None):
    """The run's TrainConfig: flags over defaults, or (with --resume) the saved one.

    A resume continues the run exactly as it was configured: a flag that differs from the saved
    configuration (other than --out-dir, --no-progress and --threads) is refused, not applied.
    """
    from .training import TrainConfig, flag, saved_train_config

    given = {**_given_train_values(args), **(extra or {})}
    if not args.resume:
        return TrainConfig(**{**args.train_defaults, **given})
    out_dir = given.get("out_dir") or TrainConfig(**args.train_defaults).out_dir
    saved = saved_train_config(out_dir)
    changed = [
        flag(name) if name != "simplified" else "--traditional"
        for name, value in given.items()
        if name not in RESUME_MAY_CHANGE and name in saved and value != saved[name]
        and not (name == "epochs" and args.epochs is None)
    ]  # fmt: skip
    if changed:
        raise InputError(
            f"--resume continues {out_dir} with its saved configuration, and {', '.join(changed)} differ from it: "
            "drop them, or pick a new --out-dir for a new run."
        )
    keep = {name: given[name] for name in RESUME_MAY_CHANGE if name in given}
    return TrainConfig(**{**saved, **keep, "out_dir": out_dir})


def _finish(summary: dict, out_dir: str) -> None:
    """Print the summary; the last line says why the run stopped."""
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    print(f"Best model: {Path(out_dir) / 'best'}")
    print(summary["stopped_by"])


def _finetune_options(args: argparse.Namespace, saved: dict | None):
    """The fine-tuning options from the flags, or (resuming) the saved ones, which flags may not change."""
    from .finetune import FinetuneOptions

    given = {
        "init_from": args.init_from,
        "base_model_id": args.base_model_id,
        "authors": args.author or None,
        "forms": args.form or None,
        "tags": args.tag or None,
        "new_chars": args.new_chars,
        "val_percent": args.val_percent,
        "replay": args.replay,
        "add_control": args.add_control,
        "push_to_hub": args.push_to_hub,
        "private": args.private,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if saved is None:
        return FinetuneOptions(**given)
    options = saved.get("extra", {}).get("finetune_options")
    if options is None:
        raise InputError(
            f"{saved['out_dir']} holds a training run, not a fine-tuning one: resume it with tangpoem train."
        )
    spelled = {"authors": "--author", "forms": "--form", "tags": "--tag"}
    changed = [spelled.get(k, "--" + k.replace("_", "-")) for k, v in given.items() if v != options.get(k)]
    if changed:
        raise InputError(
            f"--resume continues {saved['out_dir']} with its saved options, and {', '.join(changed)} differ from them: "
            "drop them, or pick a new --out-dir for a new run."
        )
    return FinetuneOptions(**options)


def _finetune(args: argparse.Namespace) -> int:
    from .finetune import finetune
    from .training import saved_train_config

    if args.push_every_epoch:  # the trainer's epoch pushes would carry a card without base_model
        raise InputError("--push-every-epoch is not available for fine-tuning; --push-to-hub pushes best/ at the end.")
    cfg = _train_config(args)
    opts = _finetune_options(args, saved_train_config(cfg.out_dir) if args.resume else None)
    summary = finetune(cfg, opts, resume=args.resume)
    _finish(summary, cfg.out_dir)
    return 0


def _train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, Trainer, saved_train_config

    resuming_finetune = args.resume and "finetune_options" in saved_train_config(
        args.out_dir or TrainConfig().out_dir
    ).get("extra", {})
    if args.init_from is not None or resuming_finetune:
        return _finetune(args)
    if args.author or args.form or args.tag:
        raise InputError("--author, --form and --tag need --init-from (or use tangpoem finetune).")
    if args.push_every_epoch and not args.push_to_hub:
        raise InputError("--push-every-epoch needs --push-to-hub REPO_ID.")
    hub = {"push_to_hub": args.push_to_hub, "push_every_epoch": args.push_every_epoch, "private": args.private}
    cfg = _train_config(args, {k: v for k, v in hub.items() if v})
    summary = Trainer(cfg).run(resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        _finish(summary, cfg.out_dir)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from .decoding import PoemRequest, generate_poems
    from .modeling import load_model

    rhyme, tone = _verse_defaults(args)
    model = load_model(args.model)
    request = PoemRequest.build(
        model.tokenizer,
        num=args.num,
        candidates=args.candidates,
        no_repeat=args.no_repeat,
        first=args.first,
        acrostic=args.acrostic,
        form=args.form,
        lines=args.lines,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        title=args.title,
        keywords=args.keywords,
        rhyme=rhyme,
        tone=tone,
        rhyme_group=args.rhyme_group,
    )
    poems = generate_poems(model, request=request)
    if args.traditional:
        poems = [p.traditional() for p in poems]
    if args.json:
        rows = [
            {"seed": p.seed, "form": p.form, "lines": p.lines, "text": p.text, "score": p.score, "notes": p.notes}
            for p in poems
        ]
        print(json.dumps(rows if len(rows) > 1 else rows[0], ensure_ascii=False, indent=2))
    else:
        print("\n\n".join(p.text for p in poems))
    for p in poems:  # a rule the user asked for is never broken silently
        for note in p.notes:
            print(f"tangpoem: note: seed {p.seed}: {note}", file=sys.stderr)
    return 0


def _verse_defaults(args: argparse.Namespace) -> tuple[bool, str | None]:
    """Rhyme and relaxed tone unless --free, for 4- and 8-line poems: a newcomer's first poem is a
    regulated one. Explicit --rhyme/--tone always apply."""
    if args.free and (args.rhyme or args.tone or args.rhyme_group):
        raise InputError(
            "--free turns rhyme and tone off: leave it out, or leave out --rhyme, --tone and --rhyme-group."
        )
    heads = len(args.acrostic.strip()) if isinstance(args.acrostic, str) else None
    regulated = not args.free and (args.lines or heads or 4) in (4, 8)
    return args.rhyme or regulated, args.tone or ("relaxed" if regulated else None)


def _check(args: argparse.Namespace) -> int:
    """Report on each poem: the argument itself, or a file of poems (blank-line separated, or one per row).

    Exit status 0 when every poem passes (format, rhyme, relaxed tone), 1 when one fails, like a linter.
    """
    from .prosody import check_poem
    from .text import is_han, normalize_punctuation, punctuate

    source = args.poem
    if os.path.isfile(source):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{source} is not UTF-8 text.") from None
        poems = []
        for block in text.replace("\r\n", "\n").split("\n\n"):
            rows = [row for row in block.split("\n") if row.strip()]
            # One whole poem per row (two or more sentence ends each, or bare and cut by its length),
            # as `tangpoem perplexity` reads.
            if rows and all(punctuate(normalize_punctuation(row.strip())).count("。") >= 2 for row in rows):
                poems += rows
            elif rows:
                poems.append(block)
    elif any(is_han(ch) for ch in source):
        poems = [source]
    else:
        raise InputError(f"{source!r} is neither a file nor a poem in Chinese characters.")
    if not poems:
        raise InputError(f"{source} holds no poems.")
    reports = [check_poem(p, form=args.form) for p in poems]
    if args.json:
        rows = [r.to_dict() for r in reports]
        print(json.dumps(rows if len(rows) > 1 else rows[0], ensure_ascii=False, indent=2))
    else:
        print("\n\n".join(r.text_report() for r in reports))
    return 0 if all(r.passed for r in reports) else 1


def _evaluate(args: argparse.Namespace) -> int:
    from .corpus import CORPUS_ENV
    from .errors import CorpusError
    from .evaluation import FORM_SHAPES, build_reference, evaluate_model, render_markdown
    from .modeling import load_model

    if not (args.corpus or os.environ.get(CORPUS_ENV)):
        raise CorpusError(
            "tangpoem evaluate needs the corpus (its first characters start the poems, novelty is measured "
            f"against its training poems and perplexity on its held-out ones): pass --corpus DIR or set {CORPUS_ENV}."
        )
    forms = args.form or list(FORM_SHAPES)
    bad = [f for f in forms if f not in FORM_SHAPES]
    if bad:
        raise InputError(f"--form must be one of {', '.join(FORM_SHAPES)}, not {bad[0]!r}.")
    if not 1 <= args.num <= 5000:
        raise InputError(f"--num must be between 1 and 5000, not {args.num}.")
    from .corpus import LEGACY_SPLIT, SPLIT_VERSION
    from .modeling import BUNDLED_MODEL_DIR

    model = load_model(args.model)
    info = Path(args.model or BUNDLED_MODEL_DIR) / "training.json"
    meta = json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}
    split_version = meta.get("split", LEGACY_SPLIT) if meta else SPLIT_VERSION
    reference = build_reference(args.corpus, simplified=model.tokenizer.simplified, split_version=split_version)
    result = evaluate_model(model, num=args.num, forms=forms, seed=args.seed, reference=reference)
    if args.write_docs:
        command = (
            ("" if args.corpus else "TANGPOEM_CORPUS=DIR ")
            + "tangpoem evaluate --write-docs"
            + "".join(
                f" {flag} {value}"
                for flag, value in (("--model", args.model), ("--num", args.num), ("--seed", args.seed))
                if value is not None
            )
        )
        out = Path(args.write_docs)
        out.parent.mkdir(parents=True, exist_ok=True)
        label = (args.model or "the bundled model") + f", every poem from its `{model.config.start_state}` start state"
        if meta:  # say which training run it is
            figure = f"test perplexity {meta['test_perplexity']}" if "test_perplexity" in meta else "trained"
            label += f" ({figure}, step {meta.get('step')}; trained on the `{split_version}` split)"
        out.write_text(render_markdown(result, command, label), encoding="utf-8")
        print(f"wrote {out}")
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(render_markdown(result))
    return 0


def read_scoring_file(path: Path, simplified: bool) -> list[dict]:
    """Poems to score: one per line of a text file, or JSON Lines rows with a ``text`` field (other
    fields, such as ``title`` and ``keywords``, are kept). Bare poems are cut into lines by their
    length (:func:`punctuate`), so a poem scores the same with or without its ，。; a length that
    fits no form is an error naming the row."""
    from .text import clean_poem_text, is_han, punctuate

    try:
        raw = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text.") from None
    rows = []
    for number, line in enumerate(raw, 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
                text = row["text"]
                if not isinstance(text, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise InputError(f"{path} line {number} is not a JSON object with a text field.") from None
        else:
            row, text = {}, line
        text = punctuate(clean_poem_text(text, simplified=simplified))
        if text and all(is_han(ch) for ch in text):
            raise InputError(
                f"{path} line {number} has {len(text)} characters without ，。, which fits no 五言 or 七言 "
                "form (20, 28, 40, 56 … characters): add its punctuation."
            )
        if text:
            rows.append({**row, "text": text})
    if not rows:
        raise InputError(f"{path} holds no poems (one per line, or JSON Lines with a text field).")
    return rows


def scoring_control(tokenizer: CharTokenizer, row: dict, number: int) -> Control:
    """A scoring row's ``title`` and ``keywords`` (a list, or words split at spaces) as the control a
    control model reads before the poem; characters the model lacks are an error naming the row."""
    title, keywords = row.get("title") or "", row.get("keywords") or []
    if isinstance(keywords, str):
        keywords = keywords.split()
    if not isinstance(title, str) or not isinstance(keywords, list) or not all(isinstance(w, str) for w in keywords):
        raise InputError(f"Poem {number}: title must be text and keywords a list of words (or one text).")
    title = "".join(ch for ch in tokenizer.normalize(title) if is_han(ch))
    words = tuple(tokenizer.normalize(w.strip()) for w in keywords if w.strip())
    unknown = sorted({ch for ch in title + "".join(words) if ch not in tokenizer})
    if unknown:
        raise InputError(
            f"Poem {number}: the model does not know the character(s) {''.join(unknown)} in its title or keywords."
        )
    return Control(title[:MAX_TITLE], words[:MAX_KEYWORDS])


def _perplexity(args: argparse.Namespace) -> int:
    from .evaluation import perplexity
    from .modeling import load_model

    path = Path(args.file)
    if not path.is_file():
        raise InputError(f"{path} is not a file.")
    model = load_model(args.model)
    rows = read_scoring_file(path, model.tokenizer.simplified)
    controls = None
    if model.config.control:
        controls = [scoring_control(model.tokenizer, row, number) for number, row in enumerate(rows, 1)]
    elif any(row.get("title") or row.get("keywords") for row in rows):
        print("tangpoem: note: this model reads no control segment: titles and keywords are ignored.", file=sys.stderr)
    value = perplexity(model, [row["text"] for row in rows], controls=controls)
    print(f"poems: {len(rows)}")
    print(f"perplexity: {value:.3f}")
    return 0


def _data_stats(args: argparse.Namespace) -> int:
    from .corpus import corpus_stats

    stats = corpus_stats(args.corpus, simplified=not args.traditional, dynasties=args.dynasties)
    if args.json:
        print(json.dumps(stats, ensure_ascii=False, indent=2))
        return 0
    print(f"files:              {stats['files']}")
    print(f"raw poems:          {stats['raw_poems']}")
    print(f"  skipped (broken): {stats['skipped_poems']} poems, {len(stats['skipped_files'])} files")
    print(f"kept poems:         {stats['kept_poems']}")
    print(f"characters:         {stats['characters']}")
    print(f"vocabulary:         {stats['vocabulary']} ({stats['script']})")
    print("forms:              " + ", ".join(f"{k} {v}" for k, v in stats["forms"].items()))
    print("splits:             " + ", ".join(f"{k} {v}" for k, v in stats["splits"].items()))
    for name, row in stats["dynasties"].items():
        print(f"{name}:")
        print(f"  raw poems:        {row['raw_poems']}")
        print(f"  kept poems:       {row['kept_poems']}")
        print(f"  characters:       {row['characters']}")
        if "left_out" in row:
            print(f"  left out:         {row['left_out']} (share a whole line with a Tang validation or test poem)")
        print("  splits:           " + ", ".join(f"{k} {v}" for k, v in row["splits"].items()))
    return 0


def _data_pack(args: argparse.Namespace) -> int:
    from .corpus import pack_corpus

    done = pack_corpus(
        args.corpus, args.out, args.dynasties, simplified=not args.traditional, keyword_min_count=args.keyword_min_count
    )
    splits = ", ".join(f"{k} {v}" for k, v in done["splits"].items())
    print(f"wrote {done['out']}: {done['bytes'] / 2**20:.1f} MiB, {done['characters']} distinct characters; {splits}")
    print(f"train from it with --corpus {done['out']}" + (f" --dynasties {args.dynasties}" if args.dynasties else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tangpoem", description="Write, score and train Tang-poem models.")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write poems")
    g.add_argument("--model", help="model folder or Hub repo id (default: the bundled model)")
    start = g.add_mutually_exclusive_group()
    start.add_argument("--first", help="the poem's first character(s)")
    start.add_argument("--acrostic", help="acrostic heads, one per line (藏头诗)")
    g.add_argument("--form", type=int, default=7, help="5 (五言) or 7 (七言) [7]")
    g.add_argument("--lines", type=int, default=None, help="number of lines, 2–16 [4; an acrostic sets it]")
    g.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0, 10] [0.8]")
    g.add_argument("--top-k", type=int, default=None, help="sample from the k likeliest characters")
    g.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling threshold (0, 1] [0.9]")
    g.add_argument("--seed", type=int, default=None, help="random seed; the same seed gives the same poem")
    g.add_argument("--num", type=int, default=1, help="how many distinct poems (poem i uses seed+i) [1]")
    g.add_argument(
        "--candidates", type=int, default=1, help="draw this many candidates per poem, print the best (by score) [1]"
    )
    g.add_argument("--no-repeat", action="store_true", help="no character twice, except 叠字 pairs and your own")
    g.add_argument("--title", help="the poem's title: read by a control model before the poem, not printed")
    g.add_argument("--keywords", help='1–4 words, e.g. "明月 故乡", each standing whole where the model likes it')
    g.add_argument("--traditional", action="store_true", help="print in traditional script")
    g.add_argument("--json", action="store_true", help="print JSON")
    g.add_argument(
        "--rhyme", action="store_true", help="even lines rhyme in one 平水韵 平声 group [on for 4 and 8 lines]"
    )
    g.add_argument(
        "--tone",
        choices=("relaxed", "strict"),
        help="follow a 平仄 pattern (relaxed: 一三五不论) [relaxed for 4 and 8 lines]",
    )
    g.add_argument("--free", action="store_true", help="no rhyme or tone rules, whatever the line count")
    g.add_argument("--rhyme-group", help="the rhyme group, e.g. 东 or 下平七阳 (implies --rhyme)")
    g.set_defaults(func=_generate)

    p = sub.add_parser(
        "perplexity",
        help="per-token perplexity of poems in a file: one per line (punctuation optional), or .jsonl rows with "
        "a text field; each poem starts from the model's start state",
    )
    p.add_argument("file")
    p.add_argument("--model", help="model folder or Hub repo id (default: the bundled model)")
    p.set_defaults(func=_perplexity)

    d = sub.add_parser("data", help="corpus tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    ds = dsub.add_parser("stats", help="counts of the cleaned corpus")
    ds.add_argument("--corpus", help="chinese-poetry folder or Hub dataset id (default: $TANGPOEM_CORPUS)")
    ds.add_argument("--traditional", action="store_true", help="keep traditional script")
    ds.add_argument("--dynasties", help="comma-separated: tang, or tang,song to add the 全宋诗 [tang]")
    ds.add_argument("--json", action="store_true", help="print JSON")
    ds.set_defaults(func=_data_stats)
    dp = dsub.add_parser(
        "pack",
        help="write the cleaned splits as uint16 ids (with titles, forms and keywords) to a folder that "
        "--corpus reads like the corpus: training on a machine without the corpus folder",
    )
    dp.add_argument("--corpus", help="chinese-poetry folder or Hub dataset id (default: $TANGPOEM_CORPUS)")
    dp.add_argument("--out", required=True, help="the folder to write (packed.npz, packed.json)")
    dp.add_argument("--dynasties", help="comma-separated: tang, or tang,song to add the 全宋诗 [tang]")
    dp.add_argument("--traditional", action="store_true", help="keep traditional script")
    dp.add_argument("--keyword-min-count", type=int, default=20, help="as tangpoem train's [20]")
    dp.set_defaults(func=_data_pack)

    c = sub.add_parser("check", help="check rhyme and tone (格律) of 绝句 and 律诗; exit 1 if a poem fails")
    c.add_argument(
        "poem", help="a poem (lines split by ，。 or newlines) or a file of poems: blank-line separated, or one per row"
    )
    c.add_argument("--form", choices=("五绝", "七绝", "五律", "七律"), help="require this form")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=_check)

    e = sub.add_parser(
        "evaluate",
        help="metric suite: rhyme, tone, diversity and novelty of generated poems (needs the corpus)",
        description="Needs the corpus (--corpus or $TANGPOEM_CORPUS): its first characters start the poems, "
        "novelty is measured against its training poems and perplexity on its held-out ones.",
    )
    e.add_argument("--model", help="model folder or Hub repo id (default: the bundled model)")
    e.add_argument("--corpus", help="chinese-poetry folder or Hub dataset id, required (default: $TANGPOEM_CORPUS)")
    e.add_argument("--num", type=int, default=500, help="poems per form and setting [500]")
    e.add_argument("--form", action="append", help="五绝, 七绝, 五律 or 七律; repeat for several [all four]")
    e.add_argument("--seed", type=int, default=0, help="random seed [0]")
    e.add_argument("--write-docs", nargs="?", const="docs/evaluation.md", help="write markdown [docs/evaluation.md]")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(func=_evaluate)

    t = sub.add_parser("train", help="train a model (same as scripts/train.py)")
    _add_train_args(t)
    _add_finetune_args(t, "start from this model (a folder, a Hub id, or 'bundled') and fine-tune it")
    t.set_defaults(func=_train)

    f = sub.add_parser(
        "finetune",
        help="fine-tune a trained model on a poet, a form, a tag or your own poems",
        description=(
            "--corpus may also be a text file with one poem per line (either script, punctuation optional). "
            "The architecture and script (--mode, --embedding-dim, --hidden-size, --num-layers, --dropout, "
            "--tie-weights, --softmax, --start-state, --traditional) come from the base model; --lr defaults to a "
            "quarter of training's (adam 5e-4). --resume continues the run in --out-dir with its saved base, data "
            "and settings."
        ),
    )
    _add_train_args(f, FINETUNE_DEFAULTS)
    _add_finetune_args(f, "the base model: a folder or a Hub id [the bundled model]")
    f.set_defaults(func=_finetune)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TangPoemError as exc:
        print(f"tangpoem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
