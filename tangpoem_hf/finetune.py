"""Fine-tuning: start from a trained model (bundled, a folder or a Hub id) and adapt it to new poems.

The corpus is a chinese-poetry folder or Hub dataset filtered by author, form or tag, or a plain
text file with one poem per line. Training itself is :class:`~tangpoem_hf.training.Trainer` with
the grown base model and these splits, so logging, progress bar, checkpoints, ``--resume`` and
curves are the same as for a model trained from scratch.

Vocabulary growth. Characters of the training poems that the base vocabulary lacks get new ids
after the old ones; old ids never move. Every new character starts as ``<unk>`` did: its
embedding row and output weight row are copies of ``<unk>``'s, and its output bias is
``<unk>``'s minus ``log(m)`` for ``m`` new characters. So, before any step,

* every old character's logit is unchanged, for any input, and on text containing new
  characters the old logits equal the base model's on the same text with those characters as
  ``<unk>`` (the base's input was exactly the ``<unk>`` embedding);
* the ``m`` new characters together take the probability that ``<unk>`` has, split evenly, so
  each old character's probability is divided by ``1 + p(<unk>)``: the base's predictions barely
  change wherever ``<unk>`` was unlikely.

``new_chars="unk"`` keeps the vocabulary and maps the new characters to ``<unk>`` instead.

Forgetting. Fine-tuning on one poet pulls the model away from Tang poetry at large; ``replay``
mixes other poems of the corpus back in. In docs/finetune.md (李白), replay 1.5 with a cosine
schedule gave the poet's held-out perplexity −16.5% for +5.0% on the general test split, where
trials without replay paid about twice as much general perplexity for the same gain.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets import Dataset, DatasetDict, Features, List, Value

from .batching import encode_poems, prepare_text
from .checkpointing import has_checkpoint
from .control import CONTROL_TOKENS, has_controls
from .corpus import (
    FILE_GLOB,
    FORMS,
    LEGACY_SPLIT,
    SPLIT_VERSION,
    build_splits,
    classify_form,
    clean_and_split,
    corpus_location,
    never_trained_on,
)
from .errors import CorpusError, InputError
from .evaluation import perplexity
from .modeling import BUNDLED_MODEL_DIR, TangPoemLSTM
from .packed import is_packed
from .text import clean_poem_text, has_placeholder, is_han, punctuate, to_simplified
from .tokenizer import VOCAB_NAME, CharTokenizer
from .training import DEFAULT_LR, TrainConfig, Trainer, new_tokens, saved_train_config

BUNDLED = "bundled"
NEW_CHAR_POLICIES = ("grow", "unk")
DEFAULT_VAL_PERCENT = 10
# A base model already knows the language; a quarter of the from-scratch rate adapts it without
# wiping that out (adam: 5e-4).
FINETUNE_LR = {name: lr / 4 for name, lr in DEFAULT_LR.items()}
CLEAN_FEATURES = Features(
    {
        "id": Value("string"),
        "author": Value("string"),
        "title": Value("string"),
        "tags": List(Value("string")),
        "text": Value("string"),
        "form": Value("string"),
    }
)


@dataclass
class FinetuneOptions:
    """What fine-tuning adds to a :class:`TrainConfig`: the base, the data filters, new characters."""

    init_from: str | None = None  # model folder, Hub repo id, or None / "bundled" for the bundled model
    base_model_id: str | None = None  # Hub id recorded as base_model when init_from is a local folder
    authors: list[str] = field(default_factory=list)
    forms: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    new_chars: str = "grow"  # "grow" (new ids) or "unk"
    val_percent: int = DEFAULT_VAL_PERCENT  # validation share for text files and corpora without one
    replay: float = 0.0  # mix in this many general training poems per selected one, against forgetting
    push_to_hub: str | None = None
    private: bool = False
    # Teach a base without a control segment to read one (form, title, keywords): the control
    # tokens join its vocabulary as new rows, and the Tang corpus gives each poem's title.
    add_control: bool = False


@dataclass
class FinetuneData:
    """The splits to train on and a description of where they came from (for the model card)."""

    splits: DatasetDict
    kind: str  # chinese-poetry, text-file, dataset
    source: str
    filters: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        counts = {name: len(ds) for name, ds in self.splits.items()}
        return {"kind": self.kind, "source": self.source, "filters": self.filters, "poems": counts, "notes": self.notes}


# --- the base model -----------------------------------------------------------------------------


def _base_source(init_from: str | None) -> str | Path:
    """The bundled model's folder for None or "bundled" (unless a folder has that name), else as given."""
    if init_from in (None, "", BUNDLED) and not (init_from and os.path.isdir(init_from)):
        return BUNDLED_MODEL_DIR
    return str(init_from)


def load_base(init_from: str | None) -> TangPoemLSTM:
    """The bundled model (None or "bundled"), a saved folder, or a Hub repo id."""
    return TangPoemLSTM.from_pretrained(_base_source(init_from))


def base_split_version(init_from: str | None) -> str:
    """The split a local base model was trained under (its training.json); today's when unknown."""
    info = Path(_base_source(init_from)) / "training.json"
    if not info.is_file():
        return SPLIT_VERSION
    return json.loads(info.read_text(encoding="utf-8")).get("split", LEGACY_SPLIT)


def _never_read(splits: DatasetDict, name: str, version: str) -> Dataset:
    keep = set(never_trained_on(splits, name, version))
    return splits[name].filter(lambda text: text in keep, input_columns="text", desc=f"Held-out {name}")


def card_base_model(opts: FinetuneOptions) -> str | None:
    """The Hub id to record as ``base_model``: explicit, or the id the base was loaded from.

    A local folder (the bundled model included) has no Hub id unless ``base_model_id`` names
    one; the Hub only accepts model ids there, so the card then records the folder in its
    training section instead.
    """
    if opts.base_model_id:
        return opts.base_model_id
    source = opts.init_from
    if source and source != BUNDLED and not os.path.exists(source):
        return source
    return None


# --- vocabulary growth ----------------------------------------------------------------------------


def new_characters(tokenizer: CharTokenizer, texts: list[str], mode: str, min_freq: int = 1) -> list[str]:
    """Characters of ``texts`` (as the model will see them) missing from the vocabulary.

    Ordered like :meth:`CharTokenizer.build`: by descending count, ties by code point.
    """
    return new_tokens(tokenizer, [prepare_text(t, mode) for t in texts], min_freq)


def grow_vocabulary(model: TangPoemLSTM, new_tokens: list[str]) -> TangPoemLSTM:
    """A copy of ``model`` whose vocabulary ends with ``new_tokens``; old ids and weights unchanged.

    New rows start as ``<unk>``'s (embedding and output weight) with output bias
    ``b_unk - log(len(new_tokens))``; see the module docstring for what this preserves.
    """
    tok = model.tokenizer
    if tok is None:
        raise InputError("The base model has no tokenizer attached.")
    if not new_tokens:
        return model
    if model.config.softmax != "full":
        raise InputError("Growing the vocabulary needs a full-softmax base; use --new-chars unk with an adaptive one.")
    known = [t for t in new_tokens if t in tok]
    if known or len(set(new_tokens)) != len(new_tokens):
        raise InputError(f"New tokens must be distinct and unknown to the base vocabulary: {''.join(known)}.")
    m, unk = len(new_tokens), tok.unk_id
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    emb = state["embed.weight"]
    state["embed.weight"] = torch.cat([emb, emb[unk].expand(m, -1)])
    if model.config.tie_weights:
        state["head.weight"] = state["embed.weight"]
    else:
        head = state["head.weight"]
        state["head.weight"] = torch.cat([head, head[unk].expand(m, -1)])
    bias = state["head.bias"]
    state["head.bias"] = torch.cat([bias, (bias[unk] - math.log(m)).expand(m)])
    grown = TangPoemLSTM(replace(model.config, vocab_size=len(tok) + m))
    grown.load_state_dict(state, strict=True)
    grown.tokenizer = CharTokenizer(tok.tokens + list(new_tokens), simplified=tok.simplified)
    grown.to(next(model.parameters()).device)
    grown.train(model.training)
    return grown


def freeze_old_embedding_rows(model: TangPoemLSTM, n_old: int) -> Any:
    """Zero the gradient of the first ``n_old`` embedding rows, so only new characters' rows learn.

    With no weight decay, Adam, AdamW, Adagrad and SGD then never move those rows (their moment
    estimates stay zero). Returns the hook handle.
    """

    def hook(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:n_old] = 0
        return grad

    return model.embed.weight.register_hook(hook)


# --- data -----------------------------------------------------------------------------------------


def _text_key(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def hash_validation(train: Dataset, val_percent: int) -> tuple[Dataset, Dataset, str]:
    """Split off a deterministic validation set by a hash of each poem's text.

    Identical poems share a hash, so a repeated poem never sits on both sides. Small sets fall back:
    if no poem hashes into validation, the poem with the smallest hash validates; if every poem
    did, only that one does; a single distinct poem validates on itself (a measure of fit only).
    """
    if not 0 < val_percent < 100:
        raise InputError(f"--val-percent must lie between 1 and 99, not {val_percent}.")
    keys = [_text_key(t) for t in train["text"]]
    distinct = sorted(set(keys))
    in_val = {k for k in distinct if k % 100 < val_percent}
    note = f"validation: the poems whose text hash falls in the first {val_percent}% (SHA-256 of the text)"
    if len(distinct) == 1:
        note = (
            "validation: the file holds one distinct poem, so it is both the training and the validation "
            "data; validation perplexity measures fit, not generalisation"
        )
        return train, train.select(range(len(train))), note
    if not in_val or len(in_val) == len(distinct):
        in_val = {distinct[0]}
        note = "validation: too few poems for a hash share, so the one poem with the smallest text hash validates"
    val_rows = [i for i, k in enumerate(keys) if k in in_val]
    train_rows = [i for i, k in enumerate(keys) if k not in in_val]
    return train.select(train_rows), train.select(val_rows), note


def text_file_splits(path: str | Path, simplified: bool = True, val_percent: int = DEFAULT_VAL_PERCENT) -> FinetuneData:
    """One poem per line (either script, with or without punctuation) → train/validation/test.

    Lines are cleaned like the corpus (:func:`clean_poem_text`); bare lines of equal 5- or
    7-character lines get their ，/。 back (:func:`punctuate`); lines with lost-character marks
    or fewer than four Han characters are dropped. The test split is empty.
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text.") from None
    except OSError as exc:
        raise InputError(f"Cannot read {path} ({exc.strerror}).") from None
    rows: dict[str, list] = {name: [] for name in CLEAN_FEATURES}
    dropped = punctuated = 0
    for number, line in enumerate(raw, start=1):
        if not line.strip():
            continue
        text = "" if has_placeholder(line) else clean_poem_text(line, simplified=simplified)
        if sum(is_han(ch) for ch in text) < 4:
            dropped += 1
            continue
        fixed = punctuate(text)
        punctuated += fixed != text
        for name, value in (("id", f"line-{number}"), ("author", ""), ("title", ""), ("tags", [])):
            rows[name].append(value)
        rows["text"].append(fixed)
        rows["form"].append(classify_form(fixed))
    if not rows["text"]:
        raise InputError(f"{path} holds no poems (one per line, at least four Han characters each).")
    everything = Dataset.from_dict(rows, features=CLEAN_FEATURES)
    train, validation, note = hash_validation(everything, val_percent)
    notes = [note]
    if dropped:
        notes.append(f"{dropped} line(s) dropped: lost-character marks or fewer than four Han characters")
    if punctuated:
        notes.append(f"{punctuated} unpunctuated line(s) got ，/。 back after every 5 or 7 characters")
    splits = DatasetDict({"train": train, "validation": validation, "test": everything.select([])})
    return FinetuneData(splits, "text-file", str(path), notes=notes)


def _raw_splits(raw: Dataset, simplified: bool) -> DatasetDict:
    """Raw chinese-poetry records (``paragraphs``) cleaned and split exactly as :func:`build_splits` does."""
    for col, default in (("author", ""), ("title", ""), ("tags", [])):
        if col not in raw.column_names:
            raw = raw.add_column(col, [default] * len(raw))
    raw = raw.select_columns(["id", "author", "title", "paragraphs", "tags"])
    splits = clean_and_split(raw, simplified)
    return DatasetDict(
        {name: ds.select_columns(list(CLEAN_FEATURES)).cast(CLEAN_FEATURES) for name, ds in splits.items()}
    )


def dataset_splits(location: str, simplified: bool = True) -> DatasetDict:
    """A Hub dataset id or a local dataset folder (Parquet, JSON Lines...) → train/validation/test.

    Cleaned ``text`` (as ``scripts/push_dataset.py`` publishes the corpus) is re-cleaned into the
    model's script and keeps the dataset's splits; raw ``id`` + ``paragraphs`` records are cleaned
    and split like a chinese-poetry folder (copies kept together).
    """
    try:
        loaded = datasets.load_dataset(location)
    except Exception as exc:  # the Hub and the loaders raise many types; the user needs one sentence
        raise CorpusError(f"Could not load the dataset {location} ({type(exc).__name__}: {exc}).") from None
    if not isinstance(loaded, DatasetDict) or "train" not in loaded:
        raise CorpusError(f"The dataset {location} has no train split.")
    columns = set(loaded["train"].column_names)
    if "text" not in columns:
        if not {"id", "paragraphs"} <= columns:
            raise CorpusError(f"The dataset {location} needs a text column, or id and paragraphs columns.")
        return _raw_splits(loaded["train"], simplified)
    parts = {}
    for name, ds in loaded.items():
        if name not in ("train", "validation", "test"):
            continue
        for col, default in (("author", ""), ("title", ""), ("tags", []), ("form", "")):
            if col not in ds.column_names:
                ds = ds.add_column(col, [default] * len(ds))
        if "id" not in ds.column_names:
            ds = ds.add_column("id", [f"{name}-{i}" for i in range(len(ds))])
        ds = ds.select_columns(list(CLEAN_FEATURES)).cast(CLEAN_FEATURES)
        ds = ds.map(
            lambda text: {"text": clean_poem_text(text, simplified=simplified)}, input_columns="text", desc="Cleaning"
        )
        ds = ds.map(lambda text: {"form": classify_form(text)}, input_columns="text")
        parts[name] = ds
    for name in ("validation", "test"):
        parts.setdefault(name, parts["train"].select([]))
    return DatasetDict(parts)


def _normalised(values: list[str]) -> set[str]:
    return {to_simplified(v.strip()) for v in values if v and v.strip()}


def filter_splits(
    splits: DatasetDict, authors: list[str] = (), forms: list[str] = (), tags: list[str] = ()
) -> DatasetDict:
    """Poems by any of ``authors``, of any of ``forms`` and with any of ``tags`` (each filter optional).

    Names and tags match in either script (both sides are compared in simplified script).
    """
    want_authors, want_tags = _normalised(list(authors)), _normalised(list(tags))
    want_forms = _normalised(list(forms))
    unknown = sorted(want_forms - set(FORMS))
    if unknown:
        raise InputError(f"--form must be one of {', '.join(FORMS)}, not {', '.join(unknown)}.")
    if not (want_authors or want_forms or want_tags):
        return splits

    def keep(batch: dict) -> list[bool]:
        out = []
        for author, form, poem_tags in zip(batch["author"], batch["form"], batch["tags"]):
            ok = not want_authors or to_simplified(author) in want_authors
            ok = ok and (not want_forms or form in want_forms)
            ok = ok and (not want_tags or bool(want_tags & {to_simplified(t) for t in poem_tags}))
            out.append(ok)
        return out

    return DatasetDict({name: ds.filter(keep, batched=True, desc=f"Filtering {name}") for name, ds in splits.items()})


def build_finetune_data(
    source: str | None,
    *,
    authors: list[str] = (),
    forms: list[str] = (),
    tags: list[str] = (),
    simplified: bool = True,
    val_percent: int = DEFAULT_VAL_PERCENT,
    replay: float = 0.0,
    dynasties: str | None = None,
) -> FinetuneData:
    """The fine-tuning splits from a text file, a chinese-poetry folder, a dataset folder or a Hub id.

    ``replay`` > 0 adds ``replay`` × (selected training poems) other poems of the unfiltered train
    split (the first by a hash of their id), a standard guard against forgetting the general
    style; validation and test stay the selected poems'.
    """
    location = corpus_location(source)
    if replay < 0:
        raise InputError(f"--replay must be 0 or more, not {replay}.")
    filters = {k: list(v) for k, v in (("author", authors), ("form", forms), ("tag", tags)) if v}
    if os.path.isfile(location):
        if authors or tags:
            raise InputError("--author and --tag need a chinese-poetry folder or dataset; a text file has neither.")
        data = text_file_splits(location, simplified=simplified, val_percent=val_percent)
        kind = "text-file"
    elif is_packed(location) or os.path.isdir(location) and next(Path(location).rglob(FILE_GLOB), None) is not None:
        splits, _ = build_splits(location, simplified=simplified, dynasties=dynasties)
        data = FinetuneData(splits, "chinese-poetry", location)
        kind = "chinese-poetry"
    else:
        if location.startswith((".", os.sep)) and not os.path.exists(location):
            raise CorpusError(f"{location} does not exist.")
        data = FinetuneData(dataset_splits(location, simplified), "dataset", location)
        kind = "dataset"
    splits = filter_splits(data.splits, authors, forms, tags)
    if len(splits["train"]) == 0:
        what = ", ".join(f"{k}={'/'.join(v)}" for k, v in filters.items()) or "no filter"
        raise InputError(f"No training poems in {location} match {what}.")
    notes = list(data.notes)
    if replay:
        if kind == "text-file" or not filters:
            raise InputError("--replay mixes in the rest of a corpus, so it needs a corpus and a filter.")
        splits, note = _with_replay(splits, data.splits["train"], replay)
        notes.append(note)
    if kind != "text-file" and len(splits["validation"]) == 0:
        train, validation, note = hash_validation(splits["train"], val_percent)
        splits = DatasetDict({"train": train, "validation": validation, "test": splits["test"]})
        notes.append("the matching poems have no validation split of their own; " + note)
    if kind == "text-file" and filters:
        notes.append("the form filter was applied after the validation split")
        if len(splits["validation"]) == 0:
            raise InputError(f"No validation poems in {location} match the form filter; use a larger file.")
    return FinetuneData(splits, kind, location, filters, notes)


def _with_replay(splits: DatasetDict, everything: Dataset, replay: float) -> tuple[DatasetDict, str]:
    chosen = set(splits["train"]["id"])
    keys = sorted((_text_key(pid), i) for i, pid in enumerate(everything["id"]) if pid not in chosen)
    count = min(len(keys), round(replay * len(splits["train"])))
    extra = everything.select(sorted(i for _, i in keys[:count])).cast(splits["train"].features)
    train = datasets.concatenate_datasets([splits["train"], extra])
    note = f"replay: {count} other poems of the unfiltered train split mixed in (the first by SHA-256 of the id)"
    return DatasetDict({**splits, "train": train}), note


# --- the run ----------------------------------------------------------------------------------------


def fit_batches(cfg: TrainConfig, poems: list, world: int = 1) -> tuple[TrainConfig, str | None]:
    """Shrink batch size (then chunk length) so a small fine-tuning set still gives one step per epoch.

    One's own collection of a few dozen poems is shorter than the default 32 × 64 tokens.
    """
    if cfg.mode == "report":
        fits = len(poems) // (cfg.batch_size * world) >= 1
        new = cfg if fits else replace(cfg, batch_size=max(1, len(poems) // world))
    else:
        tokens = sum(len(p) for p in poems) - 1
        fits = tokens // (cfg.batch_size * world) >= cfg.seq_len
        batch = max(1, tokens // (cfg.seq_len * world))
        new = cfg if fits else replace(cfg, batch_size=batch, seq_len=min(cfg.seq_len, max(2, tokens // world)))
    if new is cfg:
        return cfg, None
    return new, (
        f"the training poems are few, so batches shrink from {cfg.batch_size} × {cfg.seq_len} "
        f"to {new.batch_size} × {new.seq_len} tokens"
    )


def _run_vocabulary(out_dir: Path, base: CharTokenizer) -> list[str] | None:
    """New tokens of an earlier run in ``out_dir`` (so --resume rebuilds the same model), or None."""
    saved = out_dir / VOCAB_NAME
    if not saved.exists():
        return None
    tokens = CharTokenizer.load(saved).tokens
    if tokens[: len(base)] != base.tokens:
        raise InputError(f"{saved} does not extend the base model's vocabulary: was {out_dir} made from another base?")
    return tokens[len(base) :]


def finetune(cfg: TrainConfig, opts: FinetuneOptions, resume: bool = False, api: Any = None) -> dict[str, Any]:
    """Fine-tune, write ``best/`` with a model card naming the base, optionally push; return a summary."""
    if opts.new_chars not in NEW_CHAR_POLICIES:
        raise InputError(f"--new-chars must be grow or unk, not {opts.new_chars!r}.")
    out = Path(cfg.out_dir)
    if not resume and has_checkpoint(out / "checkpoints"):  # fail before the slow part
        raise InputError(f"{out} already holds a run: pass --resume to continue it or pick a new --out-dir.")
    if resume:
        saved_train_config(out)  # one sentence when there is nothing to resume, before the slow part
    base = load_base(opts.init_from)
    tok = base.tokenizer
    assert tok is not None
    base_cfg = base.config
    if cfg.freeze_embedding and base_cfg.tie_weights:
        raise InputError("--freeze-embedding would freeze the output layer too: the base model ties their weights.")
    base_label = opts.init_from if opts.init_from not in (None, "", BUNDLED) else f"{BUNDLED} ({BUNDLED_MODEL_DIR})"
    base_id = card_base_model(opts)
    if opts.push_to_hub and base_id is None:
        warnings.warn(
            f"The base ({base_label}) has no Hub id, so the pushed card's YAML will have no base_model "
            "(its training section names the base); pass --base-model-id to record one.",
            stacklevel=2,
        )
    data = build_finetune_data(
        cfg.corpus,
        authors=opts.authors,
        forms=opts.forms,
        tags=opts.tags,
        simplified=tok.simplified,
        val_percent=opts.val_percent,
        replay=opts.replay,
        dynasties=cfg.dynasties,
    )
    train_texts = list(data.splits["train"]["text"])
    earlier = _run_vocabulary(out, tok)
    if earlier is not None:
        new = earlier
    elif opts.new_chars == "grow":
        new = new_characters(tok, train_texts, base_cfg.preprocessing, cfg.min_freq)
    else:
        new = []
    unk_chars = [] if opts.new_chars == "grow" else new_characters(tok, train_texts, base_cfg.preprocessing)
    if opts.add_control:
        new += [t for t in CONTROL_TOKENS if t not in tok and t not in new]
    model = grow_vocabulary(base, new)
    model.config.control = has_controls(model.tokenizer)
    base_split = base_split_version(opts.init_from)
    split_version = base_split
    if data.kind == "chinese-poetry" and base_split != SPLIT_VERSION:
        # The base read poems this split holds out: validate and test only on poems it never read.
        held_out = {name: _never_read(data.splits, name, base_split) for name in data.splits if name != "train"}
        data.splits = DatasetDict({"train": data.splits["train"], **held_out})
        data.notes.append(
            f"validation and test keep only poems the base (trained on the `{base_split}` split) never read"
        )
        if SPLIT_VERSION not in base_split.split("+"):
            split_version = f"{base_split}+{SPLIT_VERSION}"
    partial_freeze = cfg.freeze_embedding and bool(new)
    if partial_freeze and cfg.weight_decay:
        raise InputError("--freeze-embedding with new characters needs --weight-decay 0 (decay would move old rows).")
    base_val = perplexity(model, list(data.splits["validation"]["text"]))
    info = {
        "base_model": base_label,
        "base_model_id": base_id,
        "data": data.describe(),
        "new_chars": opts.new_chars,
        "new_characters": "".join(new),
        "unk_characters": "".join(unk_chars),
        "base_val_perplexity": round(base_val, 3),
        "embedding_init": "new rows copy <unk>'s embedding and output rows; output bias = b_unk - log(new count)",
    }
    if partial_freeze:
        info["frozen_embedding_rows"] = len(tok)
    cfg = cfg.with_model(
        model.config,
        lr=cfg.lr if cfg.lr is not None else FINETUNE_LR[cfg.optimizer],
        simplified=tok.simplified,
        freeze_embedding=cfg.freeze_embedding and not partial_freeze,
        extra={**cfg.extra, "finetune": info, "finetune_options": asdict(opts)},
    )
    poems = encode_poems(train_texts, model.tokenizer, base_cfg.preprocessing)
    cfg, note = fit_batches(cfg, poems, int(os.environ.get("WORLD_SIZE", "1")))
    if note:
        data.notes.append(note)
    trainer = Trainer(cfg, base_model=model)
    trainer.split_version = split_version
    try:
        trainer.prepare(splits=data.splits)
    except ValueError as exc:  # the batcher's "too small" even after shrinking
        raise InputError(f"Too little fine-tuning data: {exc}") from None
    if partial_freeze:
        freeze_old_embedding_rows(trainer.model, len(tok))
    if trainer.main:
        print(
            f"Fine-tuning {base_label} on {len(train_texts)} poems ({data.kind}: {data.source}); "
            f"{len(new)} new characters{' ' + ''.join(new[:20]) if new else ''}; "
            f"validation perplexity before: {base_val:.2f}"
        )
        for note in data.notes:
            print(f"  {note}")
        if unk_chars:
            print(f"  {len(unk_chars)} characters unknown to the base become <unk>: {''.join(unk_chars[:20])}")
    summary = trainer.run(resume=resume)
    summary.update(
        base_val_perplexity=base_val,
        train_poems=len(train_texts),
        new_characters=len(new),
        vocab_size=len(trainer.tokenizer),
    )
    if not trainer.main:
        return summary
    best = out / "best"
    from .hub import push_model_folder, stage_model_folder

    # A Hub dataset names itself; the Tang corpus gets the card's default (the user's tang-poems); a file, none.
    if data.kind == "dataset" and not os.path.exists(data.source):
        datasets_ids: list[str] | None = [data.source]
    else:
        datasets_ids = None if data.kind == "chinese-poetry" else []
    card = {"base_model": base_id, "datasets": datasets_ids}
    stage_model_folder(best, best, opts.push_to_hub, **card)
    if opts.push_to_hub:
        push_model_folder(best, opts.push_to_hub, api=api, private=opts.private, **card)
        summary["pushed_to"] = opts.push_to_hub
    return summary
