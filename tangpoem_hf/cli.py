"""``tangpoem`` subcommands: thin wrappers that check arguments and print clean errors.

A :class:`~tangpoem_hf.errors.TangPoemError` becomes one line on stderr and exit code 2; no
traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import Field, fields
from pathlib import Path
from typing import NoReturn

from .errors import InputError, TangPoemError
from .options import OPTIONS, default_draw_text
from .push import add_push_parser
from .text import FORM_SHAPES, FORMS, is_han

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


def _train_fields() -> list[Field]:
    """The TrainConfig fields that are flags: those with help text (``--field-name VALUE``, or a switch)."""
    from .train_config import TrainConfig

    return [f for f in fields(TrainConfig) if "help" in f.metadata]


def _add_train_args(p: argparse.ArgumentParser, overrides: dict | None = None, shown: dict | None = None) -> None:
    """The TrainConfig flags, help from its fields; ``overrides`` changes defaults (fine-tuning's are
    not training's) and ``shown`` says a default in words where the run decides it later.

    Every flag defaults to None (the TrainConfig default is filled in later), so that a resume can
    tell the flags a user gave from the ones left out.
    """
    from .train_config import TrainConfig, flag

    defaults = TrainConfig(**(overrides or {}))
    for f in _train_fields():
        meta = f.metadata
        if "switch" in meta:  # True, or False where True is the default; bf16 also has an off switch
            p.add_argument(
                flag(f.name), dest=f.name, action="store_const", const=f.default is not True, help=meta["help"]
            )
            if meta["off"]:
                p.add_argument(meta["off"][0], dest=f.name, action="store_const", const=False, help=meta["off"][1])
            continue
        kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
        default = (shown or {}).get(f.name, getattr(defaults, f.name))
        p.add_argument(flag(f.name), type=kind, default=None, help=f"{meta['help']} [{default}]")
    may_change = " and ".join(flag(name) for name in RESUME_MAY_CHANGE if name != "out_dir")
    p.add_argument(
        "--resume",
        action="store_true",
        help=f"continue the run in --out-dir with its saved configuration (only {may_change} may change)",
    )
    p.set_defaults(train_defaults=overrides or {})


def _finetune_shown() -> dict[str, str]:
    """The defaults fine-tuning takes from elsewhere: the base model's architecture (the bundled
    model's shown) and a quarter of training's learning rate."""
    from .finetune import FINETUNE_LR
    from .modeling import BUNDLED_MODEL_DIR, CONFIG_NAME
    from .train_config import ARCHITECTURE

    bundled = json.loads((BUNDLED_MODEL_DIR / CONFIG_NAME).read_text(encoding="utf-8"))
    shown = {name: f"the base model's; the bundled one's: {bundled[name]}" for name in ARCHITECTURE if name in bundled}
    shown["mode"] = f"the base model's; the bundled one's: {bundled['preprocessing']}"
    shown["lr"] = "a quarter of training's: " + ", ".join(f"{name} {lr:g}" for name, lr in FINETUNE_LR.items())
    return shown


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
    values = {f.name: getattr(args, f.name) for f in _train_fields() if getattr(args, f.name) is not None}
    if args.max_steps is not None and args.epochs is None:  # --max-steps alone means that many steps
        values["epochs"] = args.max_steps
    return values


def _train_config(args: argparse.Namespace, extra: dict | None = None):
    """The run's TrainConfig: flags over defaults, or (with --resume) the saved one.

    A resume continues the run exactly as it was configured: a flag that differs from the saved
    configuration (other than --out-dir, --no-progress and --threads) is refused, not applied.
    """
    from .train_config import TrainConfig, changed_settings, flag, saved_train_config

    given = {**_given_train_values(args), **(extra or {})}
    if not args.resume:
        return TrainConfig(**{**args.train_defaults, **given})
    out_dir = given.get("out_dir") or TrainConfig(**args.train_defaults).out_dir
    saved = saved_train_config(out_dir)
    fixed = {
        k: v for k, v in given.items() if k not in RESUME_MAY_CHANGE and not (k == "epochs" and args.epochs is None)
    }
    changed = [flag(name) for name in changed_settings(saved, fixed)]
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
    from .train_config import changed_settings, flag

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
    unset = {k: None for k in given if k not in options}  # an option the saved run left unset
    changed = [spelled.get(k, flag(k)) for k in changed_settings({**unset, **options}, given)]
    if changed:
        raise InputError(
            f"--resume continues {saved['out_dir']} with its saved options, and {', '.join(changed)} differ from them: "
            "drop them, or pick a new --out-dir for a new run."
        )
    return FinetuneOptions(**options)


def _finetune(args: argparse.Namespace) -> int:
    from .finetune import finetune
    from .train_config import saved_train_config

    if args.push_every_epoch:  # the trainer's epoch pushes would carry a card without base_model
        raise InputError("--push-every-epoch is not available for fine-tuning; --push-to-hub pushes best/ at the end.")
    cfg = _train_config(args)
    opts = _finetune_options(args, saved_train_config(cfg.out_dir) if args.resume else None)
    summary = finetune(cfg, opts, resume=args.resume)
    _finish(summary, cfg.out_dir)
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train_config import TrainConfig, saved_train_config
    from .training import Trainer

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
    from .decoding import generate_poems
    from .modeling import load_model
    from .request import PoemRequest

    model = load_model(args.model)
    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    poems = generate_poems(model, request=PoemRequest.build(model.tokenizer, **given))
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


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    """One flag per field of GenerationOptions, its help and default from the field. Every flag
    defaults to None, so that only the settings a user gave reach PoemRequest.build."""
    for name, option in OPTIONS.items():
        meta, flag = option.metadata, "--" + name.replace("_", "-")
        if meta["kind"] is bool:
            on = " [on]" if option.default else ""
            p.add_argument(flag, action="store_const", const=True, dest=name, help=meta["help"] + on)
            if meta["off"]:
                off_flag, off_help = meta["off"]
                p.add_argument(off_flag, action="store_const", const=False, dest=name, help=off_help)
            continue
        shown = "" if option.default is None else f" [{option.default}]"
        p.add_argument(flag, type=meta["kind"], choices=meta["choices"], help=meta["help"] + shown)


def _check(args: argparse.Namespace) -> int:
    """Report on each poem: the argument itself, or a file of poems (blank-line separated, or one per row).

    Exit status 0 when every poem passes (format, rhyme, relaxed tone), 1 when one fails, like a linter.
    """
    from .prosody import check_poem
    from .text import normalize_punctuation, punctuate

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
    from .evaluation import build_reference, evaluate_model, render_markdown
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


def _perplexity(args: argparse.Namespace) -> int:
    from .modeling import load_model
    from .request import read_scoring_file, scoring_control, scoring_theme
    from .scoring import perplexity

    path = Path(args.file)
    if not path.is_file():
        raise InputError(f"{path} is not a file.")
    model = load_model(args.model)
    rows = read_scoring_file(path, model.tokenizer.simplified)
    for number, row in enumerate(rows, 1):  # a bad theme is refused whether or not the model reads it
        scoring_theme(row, number)
    controls = None
    if model.config.control:
        read = [scoring_control(model.tokenizer, row, number) for number, row in enumerate(rows, 1)]
        controls = [control for control, _ in read]
        lacking = {number: chars for number, (_, chars) in enumerate(read, 1) if chars}
        if lacking:
            chars = "".join(sorted(set("".join(lacking.values()))))
            where = ", ".join(map(str, list(lacking)[:5])) + (" …" if len(lacking) > 5 else "")
            print(
                f"tangpoem: note: {len(lacking)} poem(s) scored without their title and keywords, whose character(s) "
                f"{chars} the model does not know (poem {where}).",
                file=sys.stderr,
            )
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


class _Parser(argparse.ArgumentParser):
    """An argument error is one sentence and exit code 2, like every other error; --help shows the usage."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{message} (see {self.prog} --help).")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tangpoem", description="Write, score and train Tang-poem models.")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser(
        "generate",
        help="write poems",
        description=f"Write poems. Unless you ask otherwise: {default_draw_text()}; --free for free verse.",
    )
    g.add_argument("--model", help="model folder or Hub repo id (default: the bundled model)")
    _add_generation_args(g)
    g.add_argument("--traditional", action="store_true", help="print in traditional script")
    g.add_argument("--json", action="store_true", help="print JSON")
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
    c.add_argument("--form", choices=FORMS, help="require this form")
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
    e.add_argument(
        "--write-docs",
        nargs="?",
        const="docs/reports/evaluation.md",
        help="write markdown [docs/reports/evaluation.md]",
    )
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
    _add_train_args(f, FINETUNE_DEFAULTS, _finetune_shown())
    _add_finetune_args(f, "the base model: a folder or a Hub id [the bundled model]")
    f.set_defaults(func=_finetune)

    add_push_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = build_parser().parse_args(argv)
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except TangPoemError as exc:
        print(f"tangpoem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`tangpoem check … | head -1`): end quietly, as a Unix filter does. What
        # is still buffered would fail again at exit, so stdout is pointed at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a filter whose reader went away


if __name__ == "__main__":
    sys.exit(main())
