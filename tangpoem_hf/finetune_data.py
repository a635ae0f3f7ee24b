"""The fine-tuning corpus: a plain text file, a chinese-poetry folder, a dataset folder or a Hub id,
filtered by author, form or tag, split into train/validation/test, optionally with replayed poems.

Fine-tuning (:mod:`tangpoem_hf.finetune`) prepares its data here first, before its model and trainer.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict, Features, List, Value

from .corpus import FILE_GLOB, SPLIT_VERSION, build_splits, clean_and_split, corpus_location
from .errors import CorpusError, InputError
from .packed import is_packed
from .text import FORM_CLASSES, classify_form, clean_poem_text, has_placeholder, is_han, punctuate, to_simplified

DEFAULT_VAL_PERCENT = 10
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
class FinetuneData:
    """The splits to train on, where they came from (for the model card), and what they hold that the
    base model lacks (filled in against a base by :func:`tangpoem_hf.finetune.prepare_data`)."""

    splits: DatasetDict
    kind: str  # chinese-poetry, text-file, dataset
    source: str
    filters: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    split_version: str = SPLIT_VERSION  # the splits whose training poems the fine-tuned model has read
    new_tokens: list[str] = field(default_factory=list)  # get new ids: new characters, control tokens
    unk_chars: list[str] = field(default_factory=list)  # unknown to the base, read as <unk>

    @property
    def train_texts(self) -> list[str]:
        return list(self.splits["train"]["text"])

    def describe(self) -> dict[str, Any]:
        counts = {name: len(ds) for name, ds in self.splits.items()}
        return {"kind": self.kind, "source": self.source, "filters": self.filters, "poems": counts, "notes": self.notes}


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

    Cleaned ``text`` (as ``tangpoem push dataset`` publishes the corpus) is re-cleaned into the
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
    unknown = sorted(want_forms - set(FORM_CLASSES))
    if unknown:
        raise InputError(f"--form must be one of {', '.join(FORM_CLASSES)}, not {', '.join(unknown)}.")
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
