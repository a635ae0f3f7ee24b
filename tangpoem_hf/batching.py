"""Token ids → training batches, in the two preprocessing modes.

``ours`` packs every poem, framed by ``<bos>``/``<eos>``, into one stream cut into ``batch_size``
parallel rows; the LSTM state is carried from chunk to chunk, so no compute goes to padding.
``PoemBatches`` gives every poem a row of its own instead, so that each starts from the model's
(learned) start state, as it will when generating; poems of equal length share a batch.
``report`` is the course report's recipe: punctuation stripped, cut at 100 characters, padded.
All are pure functions of (seed, epoch, step), which is what makes ``--resume`` exact.

With a control segment (:class:`~tangpoem_hf.control.ControlledPoems`) the poems change per epoch
(titles and keywords dropped at random) and the targets inside the control are ``-100``: context,
never trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from .control import ControlledPoems, control_positions
from .modeling import IGNORE_INDEX
from .text import strip_punctuation
from .tokenizer import CharTokenizer

Mode = Literal["ours", "report"]
REPORT_LENGTH = 100
Poems = list[np.ndarray] | ControlledPoems


def prepare_text(text: str, mode: Mode) -> str:
    """What the model sees of one cleaned poem in ``mode``: line breaks are layout, never tokens
    (a generated poem's ``Poem.text`` holds them between couplets)."""
    return strip_punctuation(text)[:REPORT_LENGTH] if mode == "report" else "".join(text.split())


def encode_poems(texts: Sequence[str], tokenizer: CharTokenizer, mode: Mode) -> list[np.ndarray]:
    """One id array per poem: framed by bos/eos in ``ours``, bare and cut at 100 in ``report``."""
    framed = mode == "ours"
    return [
        np.asarray(tokenizer.encode(prepare_text(t, mode), add_bos=framed, add_eos=framed), dtype=np.int64)
        for t in texts
    ]


def _epoch_poems(poems: Poems, epoch: int) -> list[np.ndarray]:
    return poems.epoch(epoch) if isinstance(poems, ControlledPoems) else poems


def _mask_control(poems: Poems, stream: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``targets`` (ids following ``stream``'s positions) with those inside a control set to -100."""
    if not isinstance(poems, ControlledPoems):
        return targets
    inside = control_positions(stream, poems.form_ids, poems.poem_id)
    return np.where(inside[1 : len(targets) + 1], IGNORE_INDEX, targets)


class StreamBatches:
    """Packed batches: poems shuffled per epoch, concatenated, and read as parallel streams."""

    carry_state = True

    def __init__(
        self,
        poems: Poems,
        batch_size: int,
        seq_len: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.poems, self.batch_size, self.seq_len, self.seed = poems, batch_size, seq_len, seed
        self.rank, self.world_size = rank, world_size
        # With controls an epoch's length varies with what is dropped: size by the expected length
        # (an epoch that comes out shorter wraps around to its start; one that is longer loses its tail).
        total = poems.expected_total if isinstance(poems, ControlledPoems) else sum(len(p) for p in poems)
        self.row_len = (total - 1) // (batch_size * world_size)
        self.steps_per_epoch = self.row_len // seq_len
        if self.steps_per_epoch < 1:
            raise ValueError(f"The corpus ({total} tokens) is too small for batch {batch_size} × seq {seq_len}.")
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def _rows(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cached is None or self._cached[0] != epoch:
            poems = _epoch_poems(self.poems, epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(len(poems))
            n_rows, length = self.batch_size * self.world_size, self.row_len
            stream = np.resize(np.concatenate([poems[i] for i in order]), n_rows * length + 1)
            lo = self.rank * self.batch_size
            targets = _mask_control(self.poems, stream, stream[1 : n_rows * length + 1])
            x = stream[: n_rows * length].reshape(n_rows, length)[lo : lo + self.batch_size]
            y = targets.reshape(n_rows, length)[lo : lo + self.batch_size]
            self._cached = (epoch, np.ascontiguousarray(x), np.ascontiguousarray(y))
        return self._cached[1], self._cached[2]

    def get(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self._rows(epoch)
        cut = slice(step * self.seq_len, (step + 1) * self.seq_len)
        return torch.from_numpy(x[:, cut]), torch.from_numpy(y[:, cut])


class PoemBatches:
    """One poem per row, rows of (nearly) equal length together, about ``tokens`` tokens a batch.

    The batch boundaries come from the sorted lengths alone, so every epoch has the same number of
    steps; which poems of a length share a batch, and the order of batches, change per epoch.
    Poems longer than ``max_len`` tokens are cut (1% of the Tang corpus's tokens at 512).
    """

    carry_state = False

    def __init__(
        self,
        poems: Poems,
        tokens: int,
        pad_id: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_len: int = 512,
    ) -> None:
        self.poems, self.max_len = poems, max_len
        self.pad_id, self.seed, self.rank, self.world_size = pad_id, seed, rank, world_size
        # Bounds from the longest each poem can be (its whole control), so a batch of any epoch
        # stays within ``tokens``: the k-th shortest poem of an epoch is never longer than this k-th.
        full = poems.lengths() if isinstance(poems, ControlledPoems) else np.array([len(p) for p in poems])
        self.lengths = np.sort(np.minimum(full, max_len))
        self.bounds = [0]  # batch b holds sorted positions bounds[b]..bounds[b+1]
        while self.bounds[-1] < len(self.lengths):
            start, end = self.bounds[-1], self.bounds[-1] + 1
            while end < len(self.lengths) and (end + 1 - start) * self.lengths[end] <= tokens:
                end += 1
            self.bounds.append(end)
        self.steps_per_epoch = (len(self.bounds) - 1) // world_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(poems)} poems are too few for {world_size} processes.")
        self._cached: tuple[int, list[np.ndarray], np.ndarray, np.ndarray] | None = None

    def _epoch(self, epoch: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        if self._cached is None or self._cached[0] != epoch:
            poems = [p[: self.max_len] for p in _epoch_poems(self.poems, epoch)]
            rng = np.random.default_rng([self.seed, epoch])
            lengths = np.array([len(p) for p in poems])
            order = np.lexsort((rng.random(len(poems)), lengths))  # by length, shuffled within one
            self._cached = (epoch, poems, order, rng.permutation(len(self.bounds) - 1))
        return self._cached[1], self._cached[2], self._cached[3]

    def get(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        poems, order, batches = self._epoch(epoch)
        b = batches[step * self.world_size + self.rank]
        rows = [poems[i] for i in order[self.bounds[b] : self.bounds[b + 1]]]
        ids = np.full((len(rows), max(len(r) for r in rows)), self.pad_id, dtype=np.int64)
        targets = np.full((len(rows), ids.shape[1] - 1), self.pad_id, dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            targets[i, : len(r) - 1] = _mask_control(self.poems, r, r[1:])
        return torch.from_numpy(ids[:, :-1].copy()), torch.from_numpy(targets)


class PaddedBatches:
    """The report's batches: each poem padded to 100, shuffled per epoch, no state between them."""

    carry_state = False

    def __init__(
        self,
        poems: list[np.ndarray],
        batch_size: int,
        pad_id: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        length: int = REPORT_LENGTH,
    ) -> None:
        self.matrix = np.full((len(poems), length), pad_id, dtype=np.int64)
        for i, p in enumerate(poems):
            self.matrix[i, : len(p)] = p[:length]
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self._order: tuple[int, np.ndarray] | None = None
        self.steps_per_epoch = len(poems) // (batch_size * world_size)
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(poems)} poems are too few for batch {batch_size} × {world_size} processes.")

    def get(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.matrix)))
        order = self._order[1]
        start = (step * self.world_size + self.rank) * self.batch_size
        rows = self.matrix[np.sort(order[start : start + self.batch_size])]
        return torch.from_numpy(rows[:, :-1].copy()), torch.from_numpy(rows[:, 1:].copy())


def make_batches(
    poems: Poems,
    mode: Mode,
    batch_size: int,
    seq_len: int,
    pad_id: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    per_poem: bool = False,
) -> StreamBatches | PoemBatches | PaddedBatches:
    """The report's padded batches, one poem per row (``per_poem``), or packed streams."""
    if mode == "report":
        return PaddedBatches(poems, batch_size, pad_id, seed, rank, world_size)
    if per_poem:
        return PoemBatches(poems, batch_size * seq_len, pad_id, seed, rank, world_size)
    return StreamBatches(poems, batch_size, seq_len, seed, rank, world_size)
