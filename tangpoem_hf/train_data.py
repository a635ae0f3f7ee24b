"""A training run's data, prepared once from the corpus splits: the vocabulary (the run folder's
``vocab.json`` when it has one, so ids never change), the training poems as the model reads them
(each Tang poem ``tang_weight`` times, after its control segment), the sample whose mean state at
``<bos>`` becomes the start state, and the validation texts the run is measured on.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .batching import Poems, encode_poems, prepare_text
from .control import Control, ControlledPoems, clean_title, has_controls, poem_keywords, with_controls
from .corpus import cache_dir
from .tokenizer import VOCAB_NAME, CharTokenizer
from .train_config import TrainConfig

START_SAMPLE = 1024  # training poems whose mean state at <bos> becomes a packed model's start state
MONITORED = 1000  # poems of another dynasty's validation slice scored at each validation (a fixed stride)


@dataclass
class RunData:
    """What a run trains on and what it is measured on."""

    tokenizer: CharTokenizer
    control: bool  # the vocabulary holds the control tokens: poems are read after their control segment
    train: Poems  # what the batches are cut from
    start_sample: list[np.ndarray]  # up to START_SAMPLE training poems, as the model reads them
    val_texts: list[str]  # Tang's validation poems: the perplexity the run selects on
    val_controls: list[Control] | None  # their titles and keywords (a control model's themed figure)
    monitored: dict[str, list[str]]  # e.g. song_validation: logged beside Tang's, never selected on


def prepare_data(
    cfg: TrainConfig,
    splits: Any,
    run_dir: Path,
    base_tokenizer: CharTokenizer | None = None,
    save_vocab: bool = True,
    main_first: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> RunData:
    """The run's data from ``splits`` (a DatasetDict, or dicts of lists, with ``train`` and
    ``validation``; optional ``title`` and ``dynasty`` columns and ``<dynasty>_validation`` slices).

    ``base_tokenizer`` is a fine-tuned base model's vocabulary; ``save_vocab`` writes the vocabulary
    to ``run_dir`` (rank 0 alone does); ``main_first`` orders DDP ranks around the cached keyword
    tables, so that rank 0 writes them before the others read them.
    """
    train_split = splits["train"]
    texts = list(train_split["text"])
    dynasties = list(train_split["dynasty"]) if "dynasty" in _columns(train_split) else ["tang"] * len(texts)
    monitored = {
        name: list(part["text"])[:: max(1, len(part) // MONITORED)][:MONITORED]
        for name, part in splits.items()
        if name.endswith("_validation") and len(part)
    }
    tokenizer = run_tokenizer(cfg, texts, dynasties, run_dir, base_tokenizer, save_vocab)
    control = has_controls(tokenizer)
    rows = weighted_rows(dynasties, cfg.tang_weight)
    read_texts = [texts[i] for i in rows]
    val_controls = None
    if control:
        with main_first():  # the keyword tables are cached too
            val_controls = split_controls(splits["validation"], cfg)
            controls = split_controls(train_split, cfg)  # keywords ranked among each dynasty's poems, once each
        train: Poems = ControlledPoems(
            read_texts, [controls[i] for i in rows], tokenizer, cfg.seed, cfg.drop_title, cfg.drop_keywords
        )
        read = train.full  # as the model reads them
    else:
        train = read = encode_poems(read_texts, tokenizer, cfg.mode)
    return RunData(
        tokenizer=tokenizer,
        control=control,
        train=train,
        start_sample=read[:: max(1, len(read) // START_SAMPLE)][:START_SAMPLE],
        val_texts=list(splits["validation"]["text"]),
        val_controls=val_controls,
        monitored=monitored,
    )


def run_tokenizer(
    cfg: TrainConfig,
    texts: list[str],
    dynasties: list[str],
    run_dir: Path,
    base_tokenizer: CharTokenizer | None = None,
    save: bool = True,
) -> CharTokenizer:
    """Reuse the run's vocab.json (or the base model's vocabulary) so ids never change across runs.

    A new vocabulary is built from the Tang training poems, as a Tang-only run builds it; the
    characters only other dynasties use are appended after it (ids of Tang's never move).
    """
    saved = run_dir / VOCAB_NAME
    if saved.exists():
        return CharTokenizer.load(saved)
    if base_tokenizer is not None:
        tok = base_tokenizer
    else:
        tang = (prepare_text(t, cfg.mode) for t, d in zip(texts, dynasties) if d == "tang")
        tok = CharTokenizer.build(tang, cfg.min_freq, cfg.simplified)
        if cfg.control and cfg.mode == "ours":
            tok = with_controls(tok)
        others = [prepare_text(t, cfg.mode) for t, d in zip(texts, dynasties) if d != "tang"]
        if others:
            tok = CharTokenizer(tok.tokens + new_tokens(tok, others, cfg.min_freq), simplified=tok.simplified)
    if save:
        run_dir.mkdir(parents=True, exist_ok=True)
        tok.save(run_dir)
    return tok


def split_controls(split: Any, cfg: TrainConfig) -> list[Control]:
    """Each poem's title and keywords (keywords from the poem itself, ranked among its dynasty's
    poems of the split; a split without titles, such as a text file's, has none)."""
    texts = list(split["text"])
    columns = _columns(split)
    titles = list(split["title"]) if "title" in columns else [""] * len(texts)
    dynasties = list(split["dynasty"]) if "dynasty" in columns else ["tang"] * len(texts)
    keywords = poem_keywords(texts, dynasties, cache_dir(), cfg.keyword_min_count)
    return [Control(clean_title(t, cfg.simplified), k) for t, k in zip(titles, keywords)]


def weighted_rows(dynasties: list[str], tang_weight: int) -> list[int]:
    """The training poems of an epoch, as positions: each Tang poem ``tang_weight`` times, each other once."""
    return [i for i, d in enumerate(dynasties) for _ in range(tang_weight if d == "tang" else 1)]


def new_tokens(tokenizer: CharTokenizer, texts: list[str], min_freq: int = 1) -> list[str]:
    """Characters of ``texts`` the vocabulary lacks, ordered as :meth:`CharTokenizer.build` orders them."""
    counts = Counter(ch for t in texts for ch in tokenizer.normalize(t) if ch not in tokenizer)
    return sorted((ch for ch, n in counts.items() if n >= min_freq), key=lambda ch: (-counts[ch], ord(ch)))


def _columns(split: Any) -> Any:
    """A split's column names: a Dataset's, or the keys of a plain dict of lists."""
    return getattr(split, "column_names", split)
