"""A compact tokenised corpus: the cleaned splits as uint16 character ids in one compressed file.

``tangpoem data pack --dynasties tang,song --out data/packed`` writes ``packed.npz`` (every text
column of every split as one stream of uint16 ids under the pack's own character table, with
offsets) and ``packed.json`` (the table, the dynasties, the counts). Wherever a chinese-poetry folder
is read, ``--corpus data/packed`` reads the pack instead: the splits come back exactly as
:func:`~tangpoem_hf.corpus.build_splits` made them, and the keywords the pack stored go where training
looks for them (:func:`~tangpoem_hf.control.cached_keywords`). So a machine without the corpus folder
(a GPU box) trains on the same tokens, and skips the cleaning and the keyword extraction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features, List, Value

from .control import dynasty_groups, poem_keywords, store_keywords
from .errors import CorpusError
from .text import FORM_CLASSES

PACKED_META = "packed.json"
PACKED_ARRAYS = "packed.npz"
_FORMAT = 1
# Text columns of a split, each stored as one id stream; a list column is joined by a character its
# items never hold (keywords are Han 2-grams, tags are words).
TEXT_COLUMNS = ("id", "author", "title", "text")
LIST_COLUMNS = {"tags": "\n", "keywords": " "}
SPLIT_FEATURES = Features(
    {
        "id": Value("string"),
        "dynasty": Value("string"),
        "author": Value("string"),
        "title": Value("string"),
        "tags": List(Value("string")),
        "text": Value("string"),
        "form": Value("string"),
    }
)


def is_packed(location: str | os.PathLike | None) -> bool:
    """Whether ``location`` is a folder written by :func:`write_pack`."""
    return location is not None and Path(location, PACKED_META).is_file()


def _encode(strings: Sequence[str], table: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """One uint16 id stream for ``strings`` (new characters join ``table``) and the offsets of each."""
    joined = "".join(strings)
    ids = np.fromiter((table.setdefault(ch, len(table)) for ch in joined), dtype=np.int64, count=len(joined))
    if len(table) > 65536:
        raise CorpusError(f"The corpus holds {len(table)} distinct characters: more than uint16 ids can hold.")
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in strings], out=offsets[1:])
    return ids.astype(np.uint16), offsets


def _decode(ids: np.ndarray, offsets: np.ndarray, chars: np.ndarray) -> list[str]:
    whole = chars[ids].tobytes().decode("utf-32-le")  # every table entry is one code point
    return [whole[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


def write_pack(
    splits: DatasetDict, report: dict, out: str | os.PathLike, cache_dir: Path, simplified: bool, keyword_min_count: int
) -> dict:
    """Write ``splits`` and each poem's keywords (ranked as training ranks them) to ``out``; say what was written."""
    names = sorted({d for part in splits.values() for d in part["dynasty"]}, key=lambda d: (d != "tang", d))
    table: dict[str, int] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, part in splits.items():
        texts, dyns = list(part["text"]), list(part["dynasty"])
        columns = {col: list(part[col]) for col in TEXT_COLUMNS}
        columns["tags"] = [LIST_COLUMNS["tags"].join(tags) for tags in part["tags"]]
        keywords = poem_keywords(texts, dyns, cache_dir, keyword_min_count)
        columns["keywords"] = [LIST_COLUMNS["keywords"].join(words) for words in keywords]
        for col, strings in columns.items():
            arrays[f"{name}.{col}"], arrays[f"{name}.{col}.offsets"] = _encode(strings, table)
        arrays[f"{name}.form"] = np.array([FORM_CLASSES.index(f) for f in part["form"]], dtype=np.uint8)
        arrays[f"{name}.dynasty"] = np.array([names.index(d) for d in dyns], dtype=np.uint8)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{PACKED_ARRAYS}.tmp{os.getpid()}.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, folder / PACKED_ARRAYS)
    meta = {
        "format": _FORMAT,
        "dynasties": names,
        "simplified": simplified,
        "keyword_min_count": keyword_min_count,
        "splits": {name: len(part) for name, part in splits.items()},
        "report": report,
        "chars": "".join(table),
    }
    (folder / PACKED_META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    size = sum(f.stat().st_size for f in folder.iterdir() if f.name in (PACKED_META, PACKED_ARRAYS))
    return {"out": str(folder), "bytes": size, "characters": len(table), "splits": meta["splits"]}


def read_pack(location: str | os.PathLike, simplified: bool, cache_dir: Path) -> tuple[DatasetDict, dict]:
    """Every split of a pack, and its ``packed.json``. The stored keywords go into ``cache_dir``, under
    the texts training asks them for (each split's poems of one dynasty, in order)."""
    folder = Path(location)
    meta = json.loads((folder / PACKED_META).read_text(encoding="utf-8"))
    if meta.get("format") != _FORMAT:
        raise CorpusError(f"{folder} is a pack of another format ({meta.get('format')}): pack the corpus again.")
    if bool(meta["simplified"]) != simplified:
        script = "simplified" if meta["simplified"] else "traditional"
        raise CorpusError(f"{folder} holds the corpus in {script} script: pack it again in the other script.")
    chars = np.array(list(meta["chars"]), dtype="<U1")
    parts = {}
    with np.load(folder / PACKED_ARRAYS) as arrays:
        for name in meta["splits"]:
            col = {
                c: _decode(arrays[f"{name}.{c}"], arrays[f"{name}.{c}.offsets"], chars)
                for c in (*TEXT_COLUMNS, *LIST_COLUMNS)
            }
            lists = {c: [s.split(sep) if s else [] for s in col[c]] for c, sep in LIST_COLUMNS.items()}
            dynasties = [meta["dynasties"][i] for i in arrays[f"{name}.dynasty"].tolist()]
            for group in dynasty_groups(dynasties):
                texts = [col["text"][i] for i in group]
                store_keywords(
                    texts, [tuple(lists["keywords"][i]) for i in group], cache_dir, meta["keyword_min_count"]
                )
            rows = {
                "id": col["id"],
                "dynasty": dynasties,
                "author": col["author"],
                "title": col["title"],
                "tags": lists["tags"],
                "text": col["text"],
                "form": [FORM_CLASSES[i] for i in arrays[f"{name}.form"].tolist()],
            }
            parts[name] = Dataset.from_dict(rows, features=SPLIT_FEATURES)
    return DatasetDict(parts), meta
