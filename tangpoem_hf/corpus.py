"""The corpus as a ``datasets.DatasetDict``: load, clean, classify the form, split.

A chinese-poetry folder is validated file by file first (a broken file is skipped with a warning,
not fatal), normalised to one JSON Lines file, then read with ``datasets.load_dataset("json")``
and explicit Features, so Arrow caching and ``map`` come for free.

The 全唐诗 (``poet.tang.*.json``) is read by default; ``dynasties=("tang", "song")`` adds the 全宋诗
(``poet.song.*.json``) from the same folder. The Tang split never changes with what else is read
(:func:`assign_dynasty_splits`), so every figure measured on Tang validation and test stays comparable.
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
from .packed import is_packed, read_pack, write_pack
from .paths import is_missing_local_path
from .text import FORM_CLASSES, classify_form, clean_poem_text, has_placeholder, is_han, split_lines

CORPUS_ENV = "TANGPOEM_CORPUS"
DYNASTIES = ("tang", "song")  # chinese-poetry's poet.<dynasty>.*.json files, in the order they are read
DEFAULT_DYNASTIES = ("tang",)
RAW_FEATURES = Features(
    {
        "id": Value("string"),
        "dynasty": Value("string"),
        "author": Value("string"),
        "title": Value("string"),
        "paragraphs": List(Value("string")),
        "tags": List(Value("string")),
    }
)
SPLITS = ("train", "validation", "test")  # the Tang held-out splits: model selection and every figure
LEFT_OUT = "left-out"  # a poem of another dynasty that shares a whole line with a Tang held-out poem
_NORMALISED_FORMAT = 2  # part of the cached JSON Lines file's name: v2 records carry the dynasty
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
    raw_by_dynasty: dict[str, int] = field(default_factory=dict)
    # Poems of other dynasties kept out of every split because they share a whole line with a Tang
    # validation or test poem (set by build_splits).
    left_out: dict[str, int] = field(default_factory=dict)


def file_glob(dynasty: str) -> str:
    """The chinese-poetry file pattern of one dynasty."""
    return f"poet.{dynasty}.*.json"


FILE_GLOB = file_glob("tang")


def parse_dynasties(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"tang,song"`` (or a list) → the dynasties in reading order; Tang is required, since its
    validation and test poems are what every model is selected and measured on."""
    if value is None:
        return DEFAULT_DYNASTIES
    names = value.split(",") if isinstance(value, str) else list(value)
    wanted = {n.strip().lower() for n in names if n.strip()}
    unknown = sorted(wanted - set(DYNASTIES))
    if unknown:
        raise CorpusError(f"--dynasties takes {' and '.join(DYNASTIES)} (comma-separated), not {unknown[0]!r}.")
    if "tang" not in wanted:
        raise CorpusError("--dynasties must include tang: its validation and test poems measure every model.")
    return tuple(d for d in DYNASTIES if d in wanted)


def held_out_name(dynasty: str) -> str:
    """The monitoring split of a dynasty other than Tang (``song_validation``)."""
    return f"{dynasty}_validation"


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


def copy_groups(texts: Sequence[str]) -> list[int]:
    """A group number per poem: poems sharing any whole line are joined, transitively (union-find)."""
    parent = list(range(len(texts)))

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
    return [root(i) for i in range(len(texts))]


def _group_keys(ids: Sequence[str], groups: Sequence[int]) -> dict[int, str]:
    """Each group's smallest id: what the group's split is hashed from, whatever the poems' order."""
    key: dict[int, str] = {}
    for pid, g in zip(ids, groups):
        key[g] = min(key.get(g, pid), pid)
    return key


def assign_splits(ids: Sequence[str], texts: Sequence[str]) -> list[str]:
    """The split of each poem, chosen so that copies stay together.

    The 全唐诗 holds many poems twice (under two poets or two titles, often with a variant line), so
    a split by poem id alone puts copies on both sides. Poems that share any whole line are joined
    (union-find, transitively) and every poem of a group takes :func:`split_of` of the group's
    smallest id: no held-out poem shares a line with a training poem, a poem without copies keeps
    the split of its own id, and the result depends only on the poems, not on their order.
    """
    groups = copy_groups(texts)
    key = _group_keys(ids, groups)
    return [split_of(key[g]) for g in groups]


def assign_dynasty_splits(ids: Sequence[str], texts: Sequence[str], dynasties: Sequence[str]) -> list[str]:
    """Splits of Tang and other poems read together; the Tang poems' are exactly Tang's alone.

    Tang poems are split by :func:`assign_splits` over the Tang poems alone, so adding Song moves
    no Tang poem. A poem of another dynasty that shares a whole line with a Tang validation or test
    poem is ``LEFT_OUT`` (never trained on). The others are grouped with every poem, Tang included,
    by shared lines: a group holding a Tang poem trains (its poems copy Tang training poems, or
    poems left out); a group of other poems alone takes :func:`split_of` of its smallest id, its
    validation share becoming that dynasty's monitoring split (``song_validation``) and its test
    share training, since every reported figure is Tang's. A 全宋诗 poem sharing lines with a Tang
    held-out poem only through other Song poems may train: it shares no line with the held-out one.
    """
    tang = [i for i, d in enumerate(dynasties) if d == "tang"]
    out = [""] * len(ids)
    for i, split in zip(tang, assign_splits([ids[i] for i in tang], [texts[i] for i in tang])):
        out[i] = split
    if len(tang) == len(ids):
        return out
    held_lines = {line for i in tang if out[i] != "train" for line in split_lines(texts[i])}
    groups = copy_groups(texts)
    with_tang = {groups[i] for i in tang}
    others = [i for i, d in enumerate(dynasties) if d != "tang"]
    key = _group_keys([ids[i] for i in others], [groups[i] for i in others])
    for i in others:
        g = groups[i]
        if held_lines.intersection(split_lines(texts[i])):
            out[i] = LEFT_OUT
        elif g in with_tang or split_of(key[g]) != "validation":
            out[i] = "train"
        else:
            out[i] = held_out_name(dynasties[i])
    return out


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


def _normalise_folder(folder: Path, dynasties: Sequence[str] = DEFAULT_DYNASTIES) -> tuple[Path, LoadReport]:
    """Validate every file of ``dynasties`` and write the good records to one cached JSON Lines file."""
    files: list[tuple[str, Path]] = []
    for dynasty in dynasties:
        found = sorted(folder.rglob(file_glob(dynasty)), key=lambda p: str(p))
        if not found:
            raise CorpusError(f"{folder} holds no {file_glob(dynasty)} files; is it a chinese-poetry folder?")
        files += [(dynasty, f) for f in found]
    digest = hashlib.sha256(f"v{_NORMALISED_FORMAT}".encode())
    for dynasty, f in files:
        st = f.stat()
        digest.update(f"{dynasty}:{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    out = _CACHE / f"corpus-{digest.hexdigest()[:16]}.jsonl"
    report_path = out.with_suffix(".report.json")
    if out.exists() and report_path.exists():
        return out, LoadReport(**json.loads(report_path.read_text()))
    report = LoadReport(files=len(files), raw_by_dynasty=dict.fromkeys(dynasties, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as sink:
        for dynasty, f in files:
            try:
                records = json.loads(f.read_text(encoding="utf-8"))
                if not isinstance(records, list):
                    raise ValueError("top level is not a list")
            except (ValueError, UnicodeDecodeError) as exc:
                report.skipped_files.append(f.name)
                warnings.warn(f"Skipping {f.name}: not a chinese-poetry JSON list ({exc}).", stacklevel=2)
                continue
            report.raw_poems += len(records)
            report.raw_by_dynasty[dynasty] += len(records)
            for rec in records:
                good = _valid_record(rec)
                if good is None:
                    report.skipped_poems += 1
                    continue
                sink.write(json.dumps({**good, "dynasty": dynasty}, ensure_ascii=False) + "\n")
    if report.raw_poems == report.skipped_poems:
        tmp.unlink()
        raise CorpusError(f"{folder} holds no readable poems.")
    if report.skipped_poems:
        warnings.warn(f"Skipped {report.skipped_poems} poems with missing or malformed fields.", stacklevel=2)
    os.replace(tmp, out)
    report_path.write_text(json.dumps(report.__dict__))
    return out, report


def load_raw(
    source: str | os.PathLike | None = None, dynasties: Sequence[str] = DEFAULT_DYNASTIES
) -> tuple[datasets.Dataset, LoadReport]:
    """Raw poems from a chinese-poetry folder or a Hub dataset id (with the same columns; a dataset
    without a ``dynasty`` column is Tang)."""
    location = corpus_location(source)
    dynasties = parse_dynasties(dynasties)
    if os.path.isdir(location):
        jsonl, report = _normalise_folder(Path(location), dynasties)
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
    for col, default in (("author", ""), ("title", ""), ("tags", []), ("dynasty", "tang")):
        if col not in ds.column_names:
            ds = ds.add_column(col, [default] * len(ds))
    ds = ds.select_columns(list(RAW_FEATURES)).cast(RAW_FEATURES)
    ds = ds.filter(lambda d: d in dynasties, input_columns="dynasty")
    counts = Counter(ds["dynasty"])
    return ds, LoadReport(files=0, raw_poems=len(ds), raw_by_dynasty={d: counts[d] for d in dynasties})


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
    for part in splits.values():  # the legacy split was the Tang corpus's: no other dynasty was read
        dynasties = part["dynasty"] if "dynasty" in part.column_names else ["tang"] * len(part)
        for pid, text, dynasty in zip(part["id"], part["text"], dynasties):
            if dynasty == "tang" and split_of(pid) == "train":
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


def _clean_and_assign(raw: datasets.Dataset, simplified: bool) -> datasets.Dataset:
    """Cleaned poems with a ``split`` column (:func:`assign_dynasty_splits`; ``""`` for a dropped poem).

    The column is added before any filter: a filtered dataset would be rewritten whole (flattened)
    to take it, which costs minutes for the 全宋诗.
    """
    if "dynasty" not in raw.column_names:  # raw records of a dataset or a test: Tang
        raw = raw.add_column("dynasty", ["tang"] * len(raw))
    cleaned = raw.map(
        _clean_batch,
        batched=True,
        batch_size=2000,
        fn_kwargs={"simplified": simplified},
        remove_columns=["paragraphs"],
        desc="Cleaning poems",
        new_fingerprint=_cleaning_fingerprint(raw, simplified),
    )
    kept = [i for i, keep in enumerate(cleaned["keep"]) if keep]
    ids, texts, dynasties = cleaned["id"], cleaned["text"], cleaned["dynasty"]
    split = [""] * len(cleaned)
    assigned = assign_dynasty_splits([ids[i] for i in kept], [texts[i] for i in kept], [dynasties[i] for i in kept])
    for i, name in zip(kept, assigned):
        split[i] = name
    return cleaned.remove_columns("keep").add_column("split", split)


def _split_names(dynasties: Sequence[str]) -> list[str]:
    return [*SPLITS, *(held_out_name(d) for d in dynasties if d != "tang")]


def _parts(poems: datasets.Dataset) -> DatasetDict:
    dynasties = [d for d in DYNASTIES if d in set(poems.unique("dynasty"))]
    return DatasetDict(
        {
            name: poems.filter(lambda s, name=name: s == name, input_columns="split").remove_columns("split")
            for name in _split_names(dynasties)
        }
    )


def clean_and_split(raw: datasets.Dataset, simplified: bool = True) -> DatasetDict:
    """Raw records (id, author, title, paragraphs, tags[, dynasty]) → cleaned poems in train/validation/test
    (and ``song_validation`` when Song is read).

    Poems with lost characters (□, {…} placeholders) or fewer than four characters are dropped;
    the split keeps copies together (:func:`assign_dynasty_splits`).
    """
    return _parts(_clean_and_assign(raw, simplified))


def build_splits(
    source: str | os.PathLike | None = None,
    simplified: bool = True,
    dynasties: str | Sequence[str] | None = None,
) -> tuple[DatasetDict, LoadReport]:
    """Cleaned poems (id, author, title, tags, text, form, dynasty) in train/validation/test splits
    (Tang alone by default; ``dynasties="tang,song"`` adds Song to train and a ``song_validation``).

    ``source`` may also be a compact tokenised corpus (:mod:`tangpoem_hf.packed`): the same splits.
    """
    if is_packed(corpus_location(source)):
        return _load_pack(corpus_location(source), parse_dynasties(dynasties), simplified)
    raw, report = load_raw(source, parse_dynasties(dynasties))
    poems = _clean_and_assign(raw, simplified)
    left = Counter(d for d, s in zip(poems["dynasty"], poems["split"]) if s == LEFT_OUT)
    report.left_out = {d: left[d] for d in report.raw_by_dynasty if d != "tang"}
    return _parts(poems), report


def pack_corpus(
    source: str | os.PathLike | None,
    out: str | os.PathLike,
    dynasties: str | Sequence[str] | None = None,
    simplified: bool = True,
    keyword_min_count: int = 20,
) -> dict:
    """Write the cleaned splits of ``source`` to ``out`` as a compact tokenised corpus (:mod:`.packed`)."""
    splits, report = build_splits(source, simplified=simplified, dynasties=dynasties)
    return write_pack(splits, report.__dict__, out, _CACHE, simplified, keyword_min_count)


def _load_pack(location: str, dynasties: Sequence[str], simplified: bool) -> tuple[DatasetDict, LoadReport]:
    """The splits of a pack, keeping the poems of ``dynasties`` (which the pack must hold)."""
    splits, meta = read_pack(location, simplified, _CACHE)
    missing = [d for d in dynasties if d not in meta["dynasties"]]
    if missing:
        raise CorpusError(f"{location} holds no {missing[0]} poems (packed: {', '.join(meta['dynasties'])}).")
    parts = {}
    for name in _split_names(dynasties):
        part = splits[name]
        if set(part.unique("dynasty")) - set(dynasties):
            part = part.filter(lambda d: d in dynasties, input_columns="dynasty")
        parts[name] = part
    report = LoadReport(**meta["report"])
    report.raw_by_dynasty = {d: n for d, n in report.raw_by_dynasty.items() if d in dynasties}
    report.left_out = {d: n for d, n in report.left_out.items() if d in dynasties}
    return DatasetDict(parts), report


def corpus_stats(
    source: str | os.PathLike | None = None, simplified: bool = True, dynasties: str | Sequence[str] | None = None
) -> dict:
    """Counts for ``tangpoem data stats``: the whole corpus, then each dynasty and its splits."""
    splits, report = build_splits(source, simplified=simplified, dynasties=dynasties)
    chars: Counter[str] = Counter()
    forms: Counter[str] = Counter()
    per: dict[str, dict] = {
        d: {"raw_poems": report.raw_by_dynasty.get(d, 0), "kept_poems": 0, "characters": 0, "splits": {}}
        for d in parse_dynasties(dynasties)
    }
    for name, part in splits.items():
        for text, form, dynasty in zip(part["text"], part["form"], part["dynasty"]):
            han = [ch for ch in text if is_han(ch)]
            chars.update(han)
            forms[form] += 1
            row = per[dynasty]
            row["kept_poems"] += 1
            row["characters"] += len(han)
            row["splits"][name] = row["splits"].get(name, 0) + 1
    for d, row in per.items():
        if d != "tang":
            row["left_out"] = report.left_out.get(d, 0)
    return {
        "files": report.files,
        "raw_poems": report.raw_poems,
        "skipped_files": report.skipped_files,
        "skipped_poems": report.skipped_poems,
        "kept_poems": sum(len(part) for part in splits.values()),
        "characters": sum(chars.values()),
        "vocabulary": len(chars),
        "forms": {f: forms.get(f, 0) for f in FORM_CLASSES},
        "splits": {name: len(part) for name, part in splits.items()},
        "dynasties": per,
        "script": "simplified" if simplified else "traditional",
    }
