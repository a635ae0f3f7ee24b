"""Continuous batching for a server: concurrent requests share each LSTM step.

A batch-1 LSTM step leaves the CPU mostly idle inside small matmuls, so when several users wait
at once, one step over all their poems costs little more than a step for one. :class:`PoemServer`
runs a single worker thread that admits new requests between steps (no one waits for a batch to
fill or to finish), steps every active poem through one forward pass, and hands each caller its
growing poem. Each request keeps its own :class:`~tangpoem_hf.decoding.PoemWalk` (constraint states
and per-poem random generators included), so a poem is the one :func:`~tangpoem_hf.decoding.stream_poem` gives
for the same seed, whoever else is being served.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from .decoding import Poem, PoemWalk, make_walk
from .errors import InputError
from .modeling import TangPoemLSTM
from .request import PoemRequest, as_request

_DONE = object()


@dataclass
class _Request:
    walk: PoemWalk
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: bool = False
    state: tuple[torch.Tensor, torch.Tensor] | None = None
    logits: torch.Tensor | None = None
    feed: torch.Tensor | None = None  # the ids to feed before the next draw


class PoemServer:
    """Serve :meth:`stream` calls from many threads through one batched decoding loop.

    ``max_batch`` bounds how many poems share a step; more requests wait for a free row.
    """

    def __init__(self, model: TangPoemLSTM, max_batch: int = 64) -> None:
        if model.tokenizer is None:
            raise ValueError("PoemServer needs a model loaded with its tokenizer.")
        self.model, self.max_batch = model, max_batch
        self.device = next(model.parameters()).device
        self._incoming: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._active: list[_Request] = []
        self._wake = threading.Event()
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="tangpoem-server", daemon=True)
        self._worker.start()

    def stream(self, request: PoemRequest | None = None, **kwargs: Any) -> Iterator[Poem]:
        """Like :func:`~tangpoem_hf.decoding.stream_poem` (a request or its keyword arguments): the
        poem after every character.

        Bad input raises ``InputError`` here, in the caller's thread, before anything is queued.
        Stopping the iteration early (a client that went away) frees the poem's rows at once.
        """
        req = as_request(self.model, request, kwargs)
        if req.num != 1:
            raise InputError(f"The server streams one poem per call, not num={req.num}.")
        walk = make_walk(self.model.tokenizer, self.model.config.preprocessing, req)
        pending = _Request(walk)
        if self._closed:
            raise RuntimeError("The poem server is closed.")
        self._incoming.put(pending)
        self._wake.set()
        try:
            while True:
                item = pending.out.get()
                if item is _DONE:  # the worker is done with this walk: read it whole, notes and all
                    yield walk.poems()[0]
                    return
                if isinstance(item, BaseException):
                    raise item
                if len(item) < walk.spec.slots:
                    yield walk.poem(0, item)
        finally:
            pending.cancelled = True

    def close(self) -> None:
        """Stop the worker after the current step; pending callers get an error, not a hang."""
        self._closed = True
        self._wake.set()
        self._worker.join(timeout=10)

    # --- the worker -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._closed:
            self._admit()
            if not self._active:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                self._step()
            except Exception as exc:  # a failure must reach every waiting caller, never hang them
                for request in self._active:
                    request.out.put(RuntimeError(f"Generation failed: {exc}"))
                self._active.clear()
        while True:  # nobody may wait for an answer that will never come
            for request in self._active:
                request.out.put(RuntimeError("The poem server was closed."))
            try:
                self._active = [self._incoming.get_nowait()]
            except queue.Empty:
                return

    @torch.inference_mode()
    def _admit(self) -> None:
        """Move waiting requests into the batch, feeding each one its context (<bos>, and for a
        control model its control segment)."""
        while sum(r.walk.batch for r in self._active) < self.max_batch:
            try:
                request = self._incoming.get_nowait()
            except queue.Empty:
                return
            if request.cancelled:
                continue
            if request.walk.context:
                request.feed = torch.tensor([request.walk.context] * request.walk.batch)
                try:
                    self._forward([request])
                except Exception as exc:  # this request's failure is its own: the others go on
                    request.out.put(RuntimeError(f"Generation failed: {exc}"))
                    continue
            self._active.append(request)

    @torch.inference_mode()
    def _step(self) -> None:
        """Draw one character for every row of every active request, then feed them all through one
        forward pass per input length (1, or 2 with the punctuation at a line end)."""
        still: list[_Request] = []
        for request in self._active:
            if request.cancelled:
                continue
            chosen = request.walk.choose(request.logits)
            request.out.put(list(request.walk.rows[0]))  # a copy: a line search may rewrite the row's prefix
            request.feed = request.walk.advance(chosen)
            still.append(request)
        by_length: dict[int, list[_Request]] = {}
        for request in still:
            by_length.setdefault(request.feed.shape[1], []).append(request)
        for group in by_length.values():
            self._forward(group)
        self._active = []
        for request in still:
            if request.walk.finished:  # its last feed only scored the poem's end
                request.out.put(_DONE)
            else:
                self._active.append(request)

    def _state(self, request: _Request) -> tuple[torch.Tensor, torch.Tensor]:
        """The request's (h, c); the model's start state before its first feed (rows of different
        requests are stacked, so each needs its own explicit state)."""
        if request.state is None:
            start = self.model.initial_state(request.walk.batch)
            if start is None:  # a model that starts from zeros
                cfg = self.model.config
                zeros = torch.zeros(cfg.num_layers, request.walk.batch, cfg.hidden_size, device=self.device)
                start = (zeros, zeros)
            request.state = start
        return request.state

    def _forward(self, group: list[_Request]) -> None:
        """One forward pass over every row of ``group``'s requests (a request may hold several)."""
        ids = torch.cat([r.feed for r in group]).to(self.device)
        states = [self._state(r) for r in group]
        state = (torch.cat([h for h, _ in states], dim=1), torch.cat([c for _, c in states], dim=1))
        out = self.model(ids, state=state)
        logits = out.logits[:, -2:].float().cpu()
        h, c = out.state
        start = 0
        for request in group:
            end = start + request.walk.batch
            request.state = (h[:, start:end], c[:, start:end])
            rows = logits[start:end]
            request.logits = request.walk.fed(request.feed, rows) if request.walk.slot else rows[:, -1]
            if request.walk.slot and request.walk.regrouped is not None:  # a line search kept some rows
                kept = request.walk.regrouped.to(self.device)
                request.state = (request.state[0][:, kept], request.state[1][:, kept])
            start = end
