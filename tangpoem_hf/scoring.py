"""Scoring held-out poems: per-token cross-entropy and perplexity, each poem from the model's start state.

What training validates with, what ``tangpoem perplexity`` prints, and what the metric suite and the
experiments compare models by: a poem is read as in training (``<bos>``, a control model's control
segment, the poem, ``<eos>``) and only the poem's own tokens are targets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from .batching import REPORT_LENGTH, encode_poems, prepare_text
from .control import Control, control_ids
from .modeling import IGNORE_INDEX, TangPoemLSTM
from .text import classify_form, is_han


def encode_scored(
    model: TangPoemLSTM, texts: Sequence[str], controls: Sequence[Control] | None = None
) -> list[tuple[np.ndarray, int]]:
    """Each poem's ids as the model reads them, and how many leading ids are context, never targets.

    A control model reads ``<bos>`` + the control segment (the poem's form, and its entry of
    ``controls`` if given) before the poem; other models read ``<bos>`` alone (``controls`` unused).
    """
    tok = model.tokenizer
    assert tok is not None
    if not model.config.control:
        return [(p, 1) for p in encode_poems(texts, tok, model.config.preprocessing)]
    out = []
    for i, text in enumerate(texts):
        context = control_ids(tok, classify_form(text), controls[i] if controls else Control())
        body = tok.encode(prepare_text(text, "ours"), add_eos=True)
        out.append((np.asarray(context + body, dtype=np.int64), len(context)))
    return out


@contextmanager
def _evaluating(model: TangPoemLSTM) -> Iterator[None]:
    """The model in eval mode (no dropout) for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _padded(rows: Sequence[Sequence[int] | np.ndarray], pad_id: int) -> torch.Tensor:
    """Rows of ids as one (rows, longest) tensor, padded at the end."""
    ids = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return ids


@torch.inference_mode()
def token_losses(
    model: TangPoemLSTM, texts: Sequence[str], batch_size: int = 64, controls: Sequence[Control] | None = None
) -> tuple[float, int]:
    """Summed cross-entropy (nats) and the number of real target tokens over ``texts``.

    Each poem starts from the model's start state and is scored in the model's own preprocessing;
    padding and a control model's control segment (``controls``: a title and keywords per poem,
    see :func:`encode_scored`) are context, never targets. Poems are sorted by length so a batch
    wastes little compute on padding.
    """
    tok = model.tokenizer
    assert tok is not None
    device = next(model.parameters()).device
    poems = [p for p in encode_scored(model, texts, controls) if len(p[0]) >= 2]
    poems.sort(key=lambda p: len(p[0]))
    total, count = 0.0, 0
    with _evaluating(model):
        for start in range(0, len(poems), batch_size):
            chunk = poems[start : start + batch_size]
            ids = _padded([p for p, _ in chunk], tok.pad_id)
            y = ids[:, 1:].masked_fill(ids[:, 1:] == tok.pad_id, IGNORE_INDEX)
            for i, (_, context) in enumerate(chunk):
                y[i, : context - 1] = IGNORE_INDEX  # the control tokens after <bos>, and <poem>
            x, y = ids[:, :-1].to(device), y.to(device)
            logits = model(x).logits.float()
            total += float(
                F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
            )
            count += int((y != IGNORE_INDEX).sum())
    return total, count


def perplexity(
    model: TangPoemLSTM, texts: Sequence[str], batch_size: int = 64, controls: Sequence[Control] | None = None
) -> float:
    """exp(mean cross-entropy per real token): the honest, padding-free figure (see :func:`token_losses`)."""
    total, count = token_losses(model, texts, batch_size, controls)
    if count == 0:
        raise ValueError("No scorable tokens: every poem was empty.")
    return math.exp(total / count)


def _char_weights(model: TangPoemLSTM, text: str, cut: int, fold_skipped: bool) -> tuple[list[int], list[float], int]:
    """Ids of one poem in the model's preprocessing, a 0/1 weight per target, and the scored count.

    Scored targets are the Han characters 2..``cut`` of the poem; with ``fold_skipped`` the targets
    between two Han characters (punctuation) also weigh 1, so their loss lands on the next scored one.
    """
    tok = model.tokenizer
    assert tok is not None
    prepared = prepare_text(text, model.config.preprocessing)
    framed = model.config.preprocessing == "ours"
    chars = tok.normalize(prepared)
    context = control_ids(tok, classify_form(text)) if model.config.control else [tok.bos_id] if framed else []
    ids = context + tok.encode(prepared, add_eos=framed)
    offset = len(context)  # the poem's first character is ids[offset]
    assert len(ids) == len(chars) + offset + int(framed)
    weights = [0.0] * (len(ids) - 1)  # weights[k] belongs to the target ids[k + 1]
    rank, pending = 0, []
    for j, ch in enumerate(chars):
        k = j + offset - 1
        if not is_han(ch):
            pending.append(k)
            continue
        if 1 <= rank < cut and k >= 0:
            weights[k] = 1.0
            for q in pending if fold_skipped else ():
                weights[q] = 1.0
        pending = []
        rank += 1
    return ids, weights, max(0, min(rank, cut) - 1)


@torch.inference_mode()
def char_losses(
    model: TangPoemLSTM,
    texts: Sequence[str],
    batch_size: int = 64,
    cut: int = REPORT_LENGTH,
    fold_skipped: bool = False,
) -> tuple[float, int]:
    """Summed cross-entropy (nats) over each poem's Han characters 2..``cut``, and their count.

    These are the targets the report's model scores (punctuation stripped, cut at 100, the first
    character given), so models with different preprocessing compare on the same characters. The
    default drops what else a model predicts (，。, <eos>: easy, and absent from the report's task);
    ``fold_skipped`` charges that loss to the next character instead, which bounds the
    character-sequence probability from below: the conservative choice for a model with punctuation.
    """
    tok = model.tokenizer
    assert tok is not None
    device = next(model.parameters()).device
    rows = sorted((_char_weights(model, t, cut, fold_skipped) for t in texts), key=lambda r: len(r[0]))
    rows = [r for r in rows if r[2] > 0]
    total, count = 0.0, 0
    with _evaluating(model):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            ids = _padded([p for p, _, _ in chunk], tok.pad_id)
            weights = torch.zeros(ids.shape[0], ids.shape[1] - 1)
            for i, (_, w, n) in enumerate(chunk):
                weights[i, : len(w)] = torch.tensor(w)
                count += n
            ids = ids.to(device)
            logits = model(ids[:, :-1]).logits.float()
            nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            total += float((nll * weights.to(device)).sum())
    return total, count


def char_perplexity(
    model: TangPoemLSTM,
    texts: Sequence[str],
    batch_size: int = 64,
    cut: int = REPORT_LENGTH,
    fold_skipped: bool = False,
) -> float:
    """exp(mean cross-entropy per scored Han character); see :func:`char_losses`."""
    total, count = char_losses(model, texts, batch_size, cut, fold_skipped)
    if count == 0:
        raise ValueError("No scorable characters: every poem had fewer than two Han characters.")
    return math.exp(total / count)
