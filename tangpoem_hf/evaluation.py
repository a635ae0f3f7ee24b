"""Held-out perplexity over real tokens, and the metric suite built on it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .batching import encode_poems
from .modeling import IGNORE_INDEX, TangPoemLSTM

# --- perplexity ---------------------------------------------------------------------------------


@torch.inference_mode()
def token_losses(model: TangPoemLSTM, texts: Sequence[str], batch_size: int = 64) -> tuple[float, int]:
    """Summed cross-entropy (nats) and the number of real target tokens over ``texts``.

    Each poem starts from a zero state and is scored in the model's own preprocessing; padding
    never counts. Poems are sorted by length so a batch wastes little compute on padding.
    """
    tok = model.tokenizer
    assert tok is not None
    device = next(model.parameters()).device
    mode = model.config.preprocessing
    poems = [p for p in encode_poems(texts, tok, mode) if len(p) >= 2]
    poems.sort(key=len)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    for start in range(0, len(poems), batch_size):
        chunk = poems[start : start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), tok.pad_id, dtype=torch.long)
        for i, p in enumerate(chunk):
            ids[i, : len(p)] = torch.from_numpy(p)
        ids = ids.to(device)
        x, y = ids[:, :-1], ids[:, 1:].masked_fill(ids[:, 1:] == tok.pad_id, IGNORE_INDEX)
        logits = model(x).logits.float()
        total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"))
        count += int((y != IGNORE_INDEX).sum())
    model.train(was_training)
    return total, count


def perplexity(model: TangPoemLSTM, texts: Sequence[str], batch_size: int = 64) -> float:
    """exp(mean cross-entropy per real token): the honest, padding-free figure."""
    total, count = token_losses(model, texts, batch_size)
    if count == 0:
        raise ValueError("No scorable tokens: every poem was empty.")
    return math.exp(total / count)
