"""The Tang corpus as a ``datasets.DatasetDict``: load, clean, classify the form, split.

A chinese-poetry folder is validated file by file first (a broken file is skipped with a warning,
not fatal), normalised to one JSON Lines file, then read with ``datasets.load_dataset("json")``
and explicit Features, so Arrow caching and ``map`` come for free.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from datasets import DatasetDict, Features, List, Value

from . import text as text_module
from .errors import CorpusError
from .paths import is_missing_local_path
from .text import FORM_CLASSES, classify_form, clean_poem_text, has_placeholder, is_han, split_lines

CORPUS_ENV = "TANGPOEM_CORPUS"
FILE_GLOB = "poet.tang.*.json"
RAW_FEATURES = Features(
    {
        "id": Value("string"),
        "author": Value("string"),
        "title": Value("string"),
        "paragraphs": List(Value("string")),
        "tags": List(Value("string")),
    }
)
SPLITS = ("train", "validation", "test")
SPLIT_VERSION = "copies-together"  # recorded with every trained model (training.json)
LEGACY_SPLIT = "poem-id"  # models trained before copies were kept together record no version
_CACHE = Path(os.environ.get("TANGPOEM_CACHE", Path.home() / ".cache" / "tangpoem"))


@dataclass
class LoadReport:
    """What loading a folder skipped, so a user sees the cost of a damaged corpus."""

    files: int = 0
    raw_poems: int = 0  # every record in the readable files, valid or not
    skipped_files: list[str] = field(default_factory=list)
    skipped_poems: int = 0


def cache_dir() -> Path:
    """Where derived data is kept: cleaned corpora (by ``datasets``) and keyword tables."""
    return _CACHE


def corpus_location(path: str | os.PathLike | None = None) -> str:
    """The corpus argument, else ``$TANGPOEM_CORPUS``; a clear error when neither is set."""
    location = path or os.environ.get(CORPUS_ENV)
    if not location:
        raise CorpusError(
            f"No corpus given: pass --corpus DIR or set {CORPUS_ENV} to a chinese-poetry folder "
            "(npm pack chinese-poetry@2.0.1, or git clone the chinese-poetry repository)."
        )
    return str(location)


def split_of(poem_id: str) -> str:
    """96/2/2 by a hash of a key: the same on every run and every machine."""
    bucket = int.from_bytes(hashlib.sha256(poem_id.encode("utf-8")).digest()[:8], "big") % 100
    return "train" if bucket < 96 else "validation" if bucket < 98 else "test"


def assign_splits(ids: Sequence[str], texts: Sequence[str]) -> list[str]:
    """The split of each poem, chosen so that copies stay together.

    The 全唐诗 holds many poems twice (under two poets or two titles, often with a variant line), so
    a split by poem id alone puts copies on both sides. Poems that share any whole line are joined
    (union-find, transitively) and every poem of a group takes :func:`split_of` of the group's
    smallest id: no held-out poem shares a line with a training poem, a poem without copies keeps
    the split of its own id, and the result depends only on the poems, not on their order.
    """
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, text in enumerate(texts):
        for line in set(split_lines(text)):
            j = owner.setdefault(line, i)
            if root(i) != root(j):
                parent[root(i)] = root(j)
    key: dict[int, str] = {}
    for i, pid in enumerate(ids):
        r = root(i)
        key[r] = min(key.get(r, pid), pid)
    return [split_of(key[root(i)]) for i in range(len(ids))]


def _valid_record(rec: object) -> dict | None:
    if not isinstance(rec, dict):
        return None
    pid, author, title, paras = rec.get("id"), rec.get("author"), rec.get("title"), rec.get("paragraphs")
    if not (isinstance(pid, str) and isinstance(author, str) and isinstance(title, str)):
        return None
    if not isinstance(paras, list) or not paras or not all(isinstance(p, str) for p in paras):
        return None
    tags = rec.get("tags") or []
    tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    return {"id": pid, "author": author, "title": title, "paragraphs": paras, "tags": tags}


def _normalise_folder(folder: Path) -> tuple[Path, LoadReport]:
    """Validate every Tang file and write the good records to one cached JSON Lines file."""
    files = sorted(folder.rglob(FILE_GLOB), key=lambda p: str(p))
    if not files:
        raise CorpusError(f"{folder} holds no {FILE_GLOB} files; is it a chinese-poetry folder?")
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    out = _CACHE / f"corpus-{digest.hexdigest()[:16]}.jsonl"
    report_path = out.with_suffix(".report.json")
    if out.exists() and report_path.exists():
        return out, LoadReport(**json.loads(report_path.read_text()))
    report = LoadReport(files=len(files))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as sink:
        for f in files:
            try:
                records = json.loads(f.read_text(encoding="utf-8"))
                if not isinstance(records, list):
                    raise ValueError("top level is not a list")
            except (ValueError, UnicodeDecodeError) as exc:
                report.skipped_files.append(f.name)
                warnings.warn(f"Skipping {f.name}: not a chinese-poetry JSON list ({exc}).", stacklevel=2)
                continue
            report.raw_poems += len(records)
            for rec in records:
                good = _valid_record(rec)
                if good is None:
                    report.skipped_poems += 1
                    continue
                sink.write(json.dumps(good, ensure_ascii=False) + "\n")
    if report.raw_poems == report.skipped_poems:
        tmp.unlink()
        raise CorpusError(f"{folder} holds no readable poems.")
    if report.skipped_poems:
        warnings.warn(f"Skipped {report.skipped_poems} poems with missing or malformed fields.", stacklevel=2)
    os.replace(tmp, out)
    report_path.write_text(json.dumps(report.__dict__))
    return out, report


def load_raw(source: str | os.PathLike | None = None) -> tuple[datasets.Dataset, LoadReport]:
    """Raw poems from a chinese-poetry folder or a Hub dataset id (with the same columns)."""
    location = corpus_location(source)
    if os.path.isdir(location):
        jsonl, report = _normalise_folder(Path(location))
        ds = datasets.load_dataset("json", data_files=str(jsonl), features=RAW_FEATURES, split="train")
        return ds, report
    if os.path.exists(location):
        raise CorpusError(f"{location} is not a folder of chinese-poetry JSON files.")
    if is_missing_local_path(location):
        raise CorpusError(f"The corpus folder {location} does not exist.")
    try:
        ds = datasets.load_dataset(location, split="train")
    except Exception as exc:  # the Hub raises many types; the user needs one sentence
        raise CorpusError(f"Could not load the Hub dataset {location} ({type(exc).__name__}: {exc}).") from None
    missing = {"id", "paragraphs"} - set(ds.column_names)
    if missing:
        raise CorpusError(f"The dataset {location} lacks the column(s) {sorted(missing)}.")
    for col, default in (("author", ""), ("title", ""), ("tags", [])):
        if col not in ds.column_names:
            ds = ds.add_column(col, [default] * len(ds))
    ds = ds.select_columns(list(RAW_FEATURES)).cast(RAW_FEATURES)
    return ds, LoadReport(files=0, raw_poems=len(ds))


def never_trained_on(splits: DatasetDict, name: str, split_version: str = SPLIT_VERSION) -> list[str]:
    """Texts of split ``name`` that a model trained under ``split_version`` never read.

    ``split_version`` may join versions with ``+`` (``poem-id+copies-together``: a model trained
    under the legacy split, then continued under today's); it then avoids both training splits.

    Models trained before copies were kept together (``LEGACY_SPLIT``: by poem id alone) read
    some poems that are now held out, and copies of others: those poems, and every poem sharing a
    line with a poem of the old training split, are left out, so the figure stays honest.
    """
    texts = list(splits[name]["text"])
    versions = set(split_version.split("+"))  # a model continued on a newer split read both
    unknown = versions - {SPLIT_VERSION, LEGACY_SPLIT}
    if unknown:
        raise CorpusError(f"Unknown split version {sorted(unknown)[0]!r}.")
    if LEGACY_SPLIT not in versions:
        return texts
    seen: set[str] = set()
    for part in splits.values():
        for pid, text in zip(part["id"], part["text"]):
            if split_of(pid) == "train":
                seen.update(split_lines(text))
    return [t for t in texts if not seen.intersection(split_lines(t))]


def _clean_batch(batch: dict, simplified: bool) -> dict:
    texts, forms, keep = [], [], []
    for paras in batch["paragraphs"]:
        raw = "".join(paras)
        text = "" if has_placeholder(raw) else clean_poem_text(raw, simplified=simplified)
        texts.append(text)
        forms.append(classify_form(text))
        keep.append(sum(is_han(ch) for ch in text) >= 4)
    return {"text": texts, "form": forms, "keep": keep}


def _cleaning_fingerprint(raw: datasets.Dataset, simplified: bool) -> str:
    """A cache key that changes with the cleaning code itself: datasets' own fingerprint of a
    module-level function survives edits to it, so an upgraded package could reuse stale poems."""
    code = inspect.getsource(_clean_batch) + inspect.getsource(text_module)
    return hashlib.sha256(f"{raw._fingerprint}:{simplified}:{code}".encode()).hexdigest()[:16]


def clean_and_split(raw: datasets.Dataset, simplified: bool = True) -> DatasetDict:
    """Raw records (id, author, title, paragraphs, tags) → cleaned poems in train/validation/test.

    Poems with lost characters (□, {…} placeholders) or fewer than four characters are dropped;
    the split keeps copies together (:func:`assign_splits`).
    """
    cleaned = raw.map(
        _clean_batch,
        batched=True,
        batch_size=2000,
        fn_kwargs={"simplified": simplified},
        remove_columns=["paragraphs"],
        desc="Cleaning poems",
        new_fingerprint=_cleaning_fingerprint(raw, simplified),
    )
    kept = cleaned.filter(lambda keep: keep, input_columns="keep").remove_columns("keep")
    kept = kept.add_column("split", assign_splits(kept["id"], kept["text"]))
    parts = {
        name: kept.filter(lambda s, name=name: s == name, input_columns="split").remove_columns("split")
        for name in SPLITS
    }
    return DatasetDict(parts)


def build_splits(source: str | os.PathLike | None = None, simplified: bool = True) -> tuple[DatasetDict, LoadReport]:
    """Cleaned poems (id, author, title, tags, text, form) in train/validation/test splits."""
    raw, report = load_raw(source)
    return clean_and_split(raw, simplified), report


def corpus_stats(source: str | os.PathLike | None = None, simplified: bool = True) -> dict:
    """Counts for ``tangpoem data stats``."""
    splits, report = build_splits(source, simplified=simplified)
    chars: Counter[str] = Counter()
    forms: Counter[str] = Counter()
    for name in SPLITS:
        for text, form in zip(splits[name]["text"], splits[name]["form"]):
            chars.update(ch for ch in text if is_han(ch))
            forms[form] += 1
    return {
        "files": report.files,
        "raw_poems": report.raw_poems,
        "skipped_files": report.skipped_files,
        "skipped_poems": report.skipped_poems,
        "kept_poems": sum(len(splits[s]) for s in SPLITS),
        "characters": sum(chars.values()),
        "vocabulary": len(chars),
        "forms": {f: forms.get(f, 0) for f in FORM_CLASSES},
        "splits": {s: len(splits[s]) for s in SPLITS},
        "script": "simplified" if simplified else "traditional",
    }
