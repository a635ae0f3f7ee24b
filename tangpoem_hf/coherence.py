"""How well the lines of a poem belong together: character co-occurrence across lines, learned
from the corpus.

Judges reject poems that change season or scene halfway (微雨 … 晴风, 清明 … 雪); the model, which
reads left to right, does not see that. The corpus does: characters that stand in *different*
lines of the same real poem more (or less) often than chance say which images go together. For
two characters x, y the table holds a shrunken pointwise mutual information

    pmi(x, y) = log((C_xy + a) / (E_xy + a)),   E_xy = C_x · C_y / T,

where C_xy counts (line, other line) pairs of a training poem with x in one and y in the other,
C_x and T are its row and grand sums, and the pseudo-count ``a`` pulls rarely seen pairs towards
0. The matrix over the most frequent characters is stored as its leading eigenpairs
(``resources/coherence.safetensors``, built by ``scripts/build_coherence_table.py`` from the
training split only), so it ships small and a poem's score is a few small matrix products.

A poem's coherence is the mean pmi over its pairs of characters in different lines (characters
outside the table are left out): 0 for an average poem, higher when its lines share a scene.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .text import is_han, to_simplified
from .tokenizer import CharTokenizer

TABLE_PATH = Path(__file__).parent / "resources" / "coherence.safetensors"


@dataclass(frozen=True)
class CoherenceTable:
    """pmi(x, y) ≈ vectors[x] · diag(values) · vectors[y] for the characters ``chars`` (simplified)."""

    chars: str
    vectors: torch.Tensor  # (chars, rank) float32
    values: torch.Tensor  # (rank,) float32

    def index(self) -> dict[str, int]:
        return {ch: i for i, ch in enumerate(self.chars)}

    def pmi(self, x: str, y: str) -> float:
        """The stored pmi of two characters (0 for a character outside the table)."""
        where = self.index()
        if x not in where or y not in where:
            return 0.0
        return float(self.vectors[where[x]] @ (self.values * self.vectors[where[y]]))

    def score_ids(self, lines: Sequence[Sequence[int]]) -> float:
        """Mean pmi over character pairs in different lines; ``lines`` hold table indices (-1: absent)."""
        sums, counts = [], []
        for line in lines:
            known = [i for i in line if i >= 0]
            sums.append(self.vectors[known].sum(0) if known else torch.zeros(self.vectors.shape[1]))
            counts.append(len(known))
        if len(lines) < 2:
            return 0.0
        u = torch.stack(sums)  # (lines, rank)
        gram = (u * self.values) @ u.T  # pair sums between (and within) lines
        n = torch.tensor(counts, dtype=torch.float32)
        pairs = float(n.sum() ** 2 - (n**2).sum())
        if pairs <= 0:
            return 0.0
        return float(gram.sum() - gram.diagonal().sum()) / pairs

    def score(self, lines: Sequence[str]) -> float:
        """:meth:`score_ids` of lines of text."""
        where = self.index()
        return self.score_ids([[where.get(to_simplified(ch), -1) for ch in line] for line in lines])


@lru_cache(maxsize=1)
def load_table(path: Path = TABLE_PATH) -> CoherenceTable:
    """The shipped table (read once)."""
    tensors = load_file(str(path))
    chars = bytes(tensors["chars"].tolist()).decode("utf-8")
    return CoherenceTable(chars, tensors["vectors"].float(), tensors["values"].float())


_IDS: weakref.WeakKeyDictionary[CharTokenizer, torch.Tensor] = weakref.WeakKeyDictionary()


def table_ids(tokenizer: CharTokenizer, table: CoherenceTable) -> torch.Tensor:
    """(vocab,) the table index of each token (-1 when absent), so the decoder scores ids directly."""
    cached = _IDS.get(tokenizer)
    if cached is None:
        where = table.index()
        cached = torch.tensor([where.get(to_simplified(t), -1) if is_han(t) else -1 for t in tokenizer.tokens])
        _IDS[tokenizer] = cached
    return cached


# --- building the table (scripts/build_coherence_table.py) --------------------------------------


def cooccurrence(poems: Iterable[Sequence[str]], chars: str) -> np.ndarray:
    """(V, V) counts C_xy of x and y standing in two different lines of one poem (x ≠ y)."""
    where = {ch: i for i, ch in enumerate(chars)}
    size = len(chars)
    total = np.zeros(size * size, dtype=np.int64)
    chunk: list[np.ndarray] = []
    for lines in poems:
        ids = [np.array([where[ch] for ch in line if ch in where], dtype=np.int64) for line in lines]
        for a, xs in enumerate(ids):
            for b, ys in enumerate(ids):
                if a != b and len(xs) and len(ys):
                    chunk.append((xs[:, None] * size + ys[None, :]).ravel())
        if len(chunk) > 20_000:
            total += np.bincount(np.concatenate(chunk), minlength=size * size)
            chunk = []
    if chunk:
        total += np.bincount(np.concatenate(chunk), minlength=size * size)
    counts = total.reshape(size, size)
    np.fill_diagonal(counts, 0)
    return counts


def shrunken_pmi(counts: np.ndarray, pseudo: float) -> np.ndarray:
    """log((C_xy + a) / (E_xy + a)) with E_xy the count expected by chance; 0 on the diagonal."""
    c = counts.astype(np.float64)
    row = c.sum(1)
    expected = np.outer(row, row) / max(c.sum(), 1.0)
    pmi = np.log((c + pseudo) / (expected + pseudo))
    np.fill_diagonal(pmi, 0.0)
    return pmi


def low_rank(pmi: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The ``rank`` eigenpairs of largest magnitude, and the relative Frobenius error they leave."""
    values, vectors = np.linalg.eigh(pmi)
    keep = np.argsort(-np.abs(values))[:rank]
    v, w = values[keep], vectors[:, keep]
    error = float(np.linalg.norm(pmi - (w * v) @ w.T) / max(np.linalg.norm(pmi), 1e-12))
    return v, w, error


def save_table(path: Path, chars: str, values: np.ndarray, vectors: np.ndarray, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "chars": torch.tensor(list(chars.encode("utf-8")), dtype=torch.uint8),
            "vectors": torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float16)),
            "values": torch.from_numpy(values.astype(np.float32)),
        },
        str(path),
        metadata=metadata,
    )
