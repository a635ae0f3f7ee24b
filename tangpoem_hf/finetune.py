"""Fine-tuning: start from a trained model (bundled, a folder or a Hub id) and adapt it to new poems.

One pass, each part prepared once and in this order: the base model; its data (the corpus of
:mod:`tangpoem_hf.finetune_data`, a chinese-poetry folder or Hub dataset filtered by author, form
or tag, or a plain text file with one poem per line; held out where the base never read; the
characters the base lacks); its model (the base with those characters added); its trainer
(:class:`~tangpoem_hf.training.Trainer`, so logging, progress bar, checkpoints, ``--resume`` and
curves are the same as for a model trained from scratch).

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
mixes other poems of the corpus back in. In docs/reports/finetune.md (李白), replay 1.5 with a cosine
schedule gave the poet's held-out perplexity −16.5% for +5.0% on the general test split, where
trials without replay paid about twice as much general perplexity for the same gain.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets import Dataset, DatasetDict

from .batching import encode_poems, prepare_text
from .checkpointing import has_checkpoint
from .control import CONTROL_TOKENS, has_controls
from .corpus import LEGACY_SPLIT, SPLIT_VERSION, never_trained_on
from .errors import InputError
from .finetune_data import DEFAULT_VAL_PERCENT, FinetuneData, build_finetune_data
from .hub import TRAINING_INFO_NAME, push_model_folder, read_training_info, stage_model_folder
from .modeling import BUNDLED_MODEL_DIR, TangPoemLSTM
from .paths import portable_path
from .scoring import perplexity
from .tokenizer import VOCAB_NAME, CharTokenizer
from .train_config import DEFAULT_LR, TrainConfig, saved_train_config
from .train_data import new_tokens
from .training import Trainer

BUNDLED = "bundled"
NEW_CHAR_POLICIES = ("grow", "unk")
# A base model already knows the language; a quarter of the from-scratch rate adapts it without
# wiping that out (adam: 5e-4).
FINETUNE_LR = {name: lr / 4 for name, lr in DEFAULT_LR.items()}


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
    folder = Path(_base_source(init_from))
    if not (folder / TRAINING_INFO_NAME).is_file():
        return SPLIT_VERSION
    return read_training_info(folder).get("split", LEGACY_SPLIT)


def base_data(init_from: str | None) -> dict[str, Any]:
    """The dynasties a local base model read (and Tang's weight), so its card can say what the weights saw."""
    config = read_training_info(_base_source(init_from)).get("train_config", {})
    base = config.get("extra", {}).get("finetune") or {}
    if base.get("base_dynasties"):  # the base was itself fine-tuned: what its own base read
        return {"base_dynasties": base["base_dynasties"], "base_tang_weight": base.get("base_tang_weight")}
    return {"base_dynasties": config.get("dynasties") or "tang", "base_tang_weight": config.get("tang_weight")}


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


# --- the run: data, then model, then trainer ------------------------------------------------------


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


def prepare_data(cfg: TrainConfig, opts: FinetuneOptions, base: TangPoemLSTM) -> FinetuneData:
    """The corpus, filtered and split; held out only what the base never read; the tokens it lacks.

    A base trained on another split validates and tests only on poems it never read. New tokens are
    those an earlier run in ``cfg.out_dir`` added (so ``--resume`` rebuilds the same model), else the
    training poems' characters the base lacks (``--new-chars grow``) and, with ``add_control``, the
    control tokens.
    """
    tok = base.tokenizer
    assert tok is not None
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
    base_split = base_split_version(opts.init_from)
    data.split_version = base_split
    if data.kind == "chinese-poetry" and base_split != SPLIT_VERSION:
        held_out = {name: _never_read(data.splits, name, base_split) for name in data.splits if name != "train"}
        data.splits = DatasetDict({"train": data.splits["train"], **held_out})
        data.notes.append(
            f"validation and test keep only poems the base (trained on the `{base_split}` split) never read"
        )
        if SPLIT_VERSION not in base_split.split("+"):
            data.split_version = f"{base_split}+{SPLIT_VERSION}"
    mode, train = base.config.preprocessing, data.train_texts
    earlier = _run_vocabulary(Path(cfg.out_dir), tok)
    if earlier is not None:
        data.new_tokens = earlier
    elif opts.new_chars == "grow":
        data.new_tokens = new_characters(tok, train, mode, cfg.min_freq)
    if opts.new_chars == "unk":
        data.unk_chars = new_characters(tok, train, mode)
    if opts.add_control:
        data.new_tokens += [t for t in CONTROL_TOKENS if t not in tok and t not in data.new_tokens]
    if cfg.freeze_embedding and data.new_tokens and cfg.weight_decay:
        raise InputError("--freeze-embedding with new characters needs --weight-decay 0 (decay would move old rows).")
    return data


def prepare_model(base: TangPoemLSTM, data: FinetuneData) -> TangPoemLSTM:
    """The base with the data's new tokens appended; it reads a control segment once it has the tokens."""
    model = grow_vocabulary(base, data.new_tokens)
    model.config.control = has_controls(model.tokenizer)
    return model


def prepare_trainer(
    cfg: TrainConfig, opts: FinetuneOptions, model: TangPoemLSTM, data: FinetuneData, info: dict[str, Any]
) -> Trainer:
    """A trainer for ``model`` on ``data``: the model's architecture, the fine-tuning rate, batches that fit.

    With new tokens, ``--freeze-embedding`` freezes only the base's rows, so the new ones still learn.
    """
    n_old = len(model.tokenizer) - len(data.new_tokens)
    partial_freeze = cfg.freeze_embedding and bool(data.new_tokens)
    if partial_freeze:
        info["frozen_embedding_rows"] = n_old
    cfg = cfg.with_model(
        model.config,
        lr=cfg.lr if cfg.lr is not None else FINETUNE_LR[cfg.optimizer],
        simplified=model.tokenizer.simplified,
        freeze_embedding=cfg.freeze_embedding and not partial_freeze,
        extra={**cfg.extra, "finetune": info, "finetune_options": asdict(opts)},
    )
    poems = encode_poems(data.train_texts, model.tokenizer, model.config.preprocessing)
    cfg, note = fit_batches(cfg, poems, int(os.environ.get("WORLD_SIZE", "1")))
    if note:
        data.notes.append(note)
    trainer = Trainer(cfg, base_model=model)
    trainer.split_version = data.split_version
    try:
        trainer.prepare(splits=data.splits)
    except ValueError as exc:  # the batcher's "too small" even after shrinking
        raise InputError(f"Too little fine-tuning data: {exc}") from None
    if partial_freeze:
        freeze_old_embedding_rows(trainer.model, n_old)
    return trainer


@contextmanager
def datasets_bars_off() -> Iterator[None]:
    """``datasets`` draws a bar for every map and filter (Generating, Cleaning, Filtering train…);
    a fine-tuning run shows only its own training bar, and a caller's setting comes back after."""
    was_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            datasets.enable_progress_bars()


@datasets_bars_off()
def finetune(cfg: TrainConfig, opts: FinetuneOptions, resume: bool = False, api: Any = None) -> dict[str, Any]:
    """Fine-tune, write ``best/`` with a model card naming the base, optionally push; return a summary.

    One pass: the base, then the data (:func:`prepare_data`), the model (:func:`prepare_model`) and
    the trainer (:func:`prepare_trainer`), each prepared once; then the run and the card.
    """
    if opts.new_chars not in NEW_CHAR_POLICIES:
        raise InputError(f"--new-chars must be grow or unk, not {opts.new_chars!r}.")
    out = Path(cfg.out_dir)
    if not resume and has_checkpoint(out / "checkpoints"):  # fail before the slow part
        raise InputError(f"{out} already holds a run: pass --resume to continue it or pick a new --out-dir.")
    if resume:
        saved_train_config(out)  # one sentence when there is nothing to resume, before the slow part
    base = load_base(opts.init_from)
    if cfg.freeze_embedding and base.config.tie_weights:
        raise InputError("--freeze-embedding would freeze the output layer too: the base model ties their weights.")
    bundled = opts.init_from in (None, "", BUNDLED)
    base_label = f"{BUNDLED} (tangpoem_hf/{BUNDLED_MODEL_DIR.name})" if bundled else portable_path(opts.init_from)
    base_id = card_base_model(opts)
    if opts.push_to_hub and base_id is None:
        warnings.warn(
            f"The base ({base_label}) has no Hub id, so the pushed card's YAML will have no base_model "
            "(its training section names the base); pass --base-model-id to record one.",
            stacklevel=2,
        )
    data = prepare_data(cfg, opts, base)
    model = prepare_model(base, data)
    base_val = perplexity(model, list(data.splits["validation"]["text"]))
    info = {
        "base_model": base_label,
        "base_model_id": base_id,
        "data": data.describe(),
        "new_chars": opts.new_chars,
        "new_characters": "".join(data.new_tokens),
        "unk_characters": "".join(data.unk_chars),
        "base_val_perplexity": round(base_val, 3),
        **base_data(opts.init_from),
        "embedding_init": "new rows copy <unk>'s embedding and output rows; output bias = b_unk - log(new count)",
    }
    trainer = prepare_trainer(cfg, opts, model, data, info)
    new, unk = data.new_tokens, data.unk_chars
    if trainer.main:
        print(
            f"Fine-tuning {base_label} on {len(data.splits['train'])} poems ({data.kind}: {data.source}); "
            f"{len(new)} new characters{' ' + ''.join(new[:20]) if new else ''}; "
            f"validation perplexity before: {base_val:.2f}"
        )
        for note in data.notes:
            print(f"  {note}")
        if unk:
            print(f"  {len(unk)} characters unknown to the base become <unk>: {''.join(unk[:20])}")
    summary = trainer.run(resume=resume)
    summary.update(
        base_val_perplexity=base_val,
        train_poems=len(data.splits["train"]),
        new_characters=len(new),
        vocab_size=len(trainer.tokenizer),
    )
    if trainer.main:
        _publish(out / "best", opts, data, base_id, api, summary)
    return summary


def _publish(
    best: Path, opts: FinetuneOptions, data: FinetuneData, base_id: str | None, api: Any, summary: dict
) -> None:
    """Write ``best/``'s model card (naming the base and the data) and push it when asked."""
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
