"""Fork the constraints' per-poem states: the rows a line search keeps, each copied as often as
it has children.

A line-level search (:class:`~tangpoem_hf.decoding.LineWalk`) keeps the best partial poems after
each line and lets each go on in several rows. The rules (rhyme, tone, keywords, no repeats) must
then see exactly the prefix each new row carries on, so every per-row part of a state is taken
at the parent's row (like transformers' ``_reorder_cache`` for beam search), while what all rows
share (vocabulary masks, caches) is shared. One function per rule; a rule without one cannot be
forked and says so.
"""

from __future__ import annotations

import copy
import dataclasses
from functools import singledispatch
from typing import Any

import torch

from .constraints import Broken, Constraint, Forced, HanOnly, Keywords, KeywordState, NoRepeat, RepeatState
from .errors import InputError
from .prosody import RegulatedVerse, RhymeState, ToneState


def select_state(constraint: Constraint, state: Any, rows: torch.Tensor) -> Any:
    """``constraint``'s state for the poems ``rows`` (indices into the current batch, repeats allowed)."""
    if state is None:
        return None
    return _select(constraint, state, rows)


def can_fork(constraint: Constraint) -> bool:
    """Whether a line search can fork this rule's states."""
    return _select.dispatch(type(constraint)) is not _select.dispatch(object)


@singledispatch
def _select(constraint: Constraint, state: Any, rows: torch.Tensor) -> Any:
    raise InputError(f"The rule {constraint.name!r} cannot be used with a line search: use search='poem'.")


@_select.register
def _(constraint: HanOnly, state: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return state  # one mask for every poem


@_select.register
def _(constraint: Forced, state: tuple, rows: torch.Tensor) -> tuple:
    return state  # the request's forced characters, the same for every poem


def _broken(broken: Broken, rows: list[int]) -> Broken:
    out = copy.copy(broken)
    out.events = [list(broken.events[r]) for r in rows]
    return out


@_select.register
def _(constraint: Keywords, state: KeywordState, rows: torch.Tensor) -> KeywordState:
    r = rows.tolist()
    return dataclasses.replace(
        state,
        pending=[set(state.pending[i]) for i in r],
        active=[state.active[i] for i in r],
        starts=[list(state.starts[i]) for i in r],
        free=[state.free[i] for i in r],
        seen=[{w: list(v) for w, v in state.seen[i].items()} for i in r],
    )  # ``fits`` is a cache shared by all poems


@_select.register
def _(constraint: NoRepeat, state: RepeatState, rows: torch.Tensor) -> RepeatState:
    return dataclasses.replace(
        state, counts=state.counts[rows], last=state.last[rows], broken=_broken(state.broken, rows.tolist())
    )


def _tone(state: ToneState, rows: torch.Tensor) -> ToneState:
    return dataclasses.replace(state, alive=state.alive[rows], broken=_broken(state.broken, rows.tolist()))


@_select.register
def _(constraint: RegulatedVerse, state: tuple, rows: torch.Tensor) -> tuple:
    rhyme, tone = state
    tone = _tone(tone, rows) if tone is not None else None
    if rhyme is not None:
        rhyme = _rhyme(rhyme, rows, tone)
    return rhyme, tone


def _rhyme(state: RhymeState, rows: torch.Tensor, tone: ToneState | None) -> RhymeState:
    return dataclasses.replace(
        state,
        groups=state.groups[rows],
        used=state.used[rows],
        broken=_broken(state.broken, rows.tolist()),
        tone=tone,  # the tone state of the same (forked) poems
    )
