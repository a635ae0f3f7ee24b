"""The only place poems are produced: one step loop over the LSTM state, with constraints.

The decoder walks the poem's character slots (line × column) and samples one character per slot,
feeding ，/。 itself at line ends. The shape is therefore guaranteed by construction, never cut
afterwards, and the loop always ends after ``form × lines`` samples. What may stand in a slot is
decided by small composable :class:`~tangpoem_hf.constraints.Constraint` objects, like
transformers' LogitsProcessors; their per-poem state lives in the walk, never in the objects.

Every caller (CLI, app, server, Python API) describes what it wants with one validated
:class:`~tangpoem_hf.request.PoemRequest` (request.py checks the input); the public functions
build it from keyword arguments.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .coherence import load_table as load_coherence
from .coherence import table_ids
from .constraints import Constraint, Forced, HanOnly, PoemSpec, stray_repeats
from .control import Control, control_ids, has_controls
from .errors import InputError
from .modeling import TangPoemLSTM
from .request import PoemRequest, as_request, rewrite_request
from .text import form_name, join_lines, line_end, to_traditional
from .tokenizer import CharTokenizer

REPEAT_PENALTY = 1.0  # score points per stray repeated character (see experiments/score_study.py)
NUCLEUS_GUESSES = (1024, 4096)  # top-p sampling: candidates tried before a full sort
QUICK_NUCLEUS = 64  # tried first: topk takes its cheap partial-sort path up to vocab / 64


@dataclass
class Poem:
    """A finished (or, while streaming, partial) poem."""

    lines: list[str]
    form: int
    seed: int
    total_lines: int = 0  # the poem's length when finished; 0 means len(lines)
    partial: str = ""  # the unfinished line while streaming
    notes: list[str] = field(default_factory=list)  # rules the poem had to break, one sentence each
    score: float | None = None  # the ranking score of a finished poem (see score_lines); higher is better
    others: list[Poem] = field(default_factory=list)  # the other candidates drawn for it, best first
    candidate: int = 0  # which of the request's candidates for this seed (0: the one drawn without ranking)

    @property
    def finished(self) -> bool:
        return not self.partial and len(self.lines) == (self.total_lines or len(self.lines))

    @property
    def text(self) -> str:
        """Couplets on separate rows: 「，」 after odd lines, 「。」 after even ones."""
        rows, parts = [], []
        total = self.total_lines or len(self.lines)
        for i, line in enumerate(self.lines):
            parts.append(line + line_end(i, total))
            if i % 2 == 1 or i + 1 == total:
                rows.append("".join(parts))
                parts = []
        if self.partial:
            rows.append("".join(parts) + self.partial)
        elif parts:
            rows.append("".join(parts))
        return "\n".join(rows)

    def traditional(self) -> Poem:
        lines = [to_traditional(line) for line in self.lines]
        others = [p.traditional() for p in self.others]
        partial = to_traditional(self.partial)
        return Poem(
            lines, self.form, self.seed, self.total_lines, partial, list(self.notes), self.score, others, self.candidate
        )

    def __str__(self) -> str:
        return self.text


# --- the loop ---------------------------------------------------------------------------------


def _sample_rows(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gens: Sequence[torch.Generator]
) -> torch.Tensor:
    """One draw per masked row of (rows, vocab) logits, by inverse CDF with each poem's own generator.

    Every row is computed on its own (in float64, with its own generator), so a poem is the same
    whatever else shares its batch; the rows only share the tensor calls, which is what makes many
    candidates cheap.
    """
    logits = logits.double() / temperature
    vocab = logits.shape[-1]
    if top_k:
        kth = torch.topk(logits, min(top_k, vocab), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        return _draw_nucleus(probs, top_p, gens)
    cdf = torch.cumsum(probs, dim=-1)
    u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in gens]) * cdf[:, -1]
    return torch.searchsorted(cdf, u.unsqueeze(1)).squeeze(1).clamp(max=vocab - 1)


def _draw_nucleus(probs: torch.Tensor, top_p: float, gens: Sequence[torch.Generator]) -> torch.Tensor:
    """One draw per row from its top-p nucleus.

    A partial sort (topk) of the likeliest characters is far cheaper than sorting the whole
    vocabulary, and gives the same nucleus whenever it already holds top_p of the mass; a row whose
    nucleus is wider tries the larger guesses on its own. ``QUICK_NUCLEUS`` (topk's cheap heap path)
    comes first and is trusted only where it decides the nucleus alone: no tie of probabilities
    straddles the nucleus' edge, whose order the larger guess's sort would settle. The draw runs on
    the sorted entries put back in vocabulary order: the same running sums as a cumulative sum over
    the whole vocabulary (the left-out entries add exact zeros), without (rows, vocab) copies.
    """
    vocab = probs.shape[-1]
    out = torch.empty(len(probs), dtype=torch.long)
    pending = torch.arange(len(probs))
    for guess in (QUICK_NUCLEUS, *NUCLEUS_GUESSES, vocab):
        rows = probs[pending]
        sorted_p, order = torch.topk(rows, min(guess, vocab), dim=-1)
        mass = torch.cumsum(sorted_p, dim=-1)  # the same running sums a full sort would give
        keep = mass - sorted_p < top_p
        done = (mass[:, -1] >= top_p) | (guess >= vocab)
        if guess == QUICK_NUCLEUS:
            n = keep.sum(1, keepdim=True)
            edge = sorted_p.gather(1, torch.cat([n - 1, n.clamp(max=guess - 1)], dim=1))
            done &= (n.squeeze(1) < guess) & (edge[:, 0] != edge[:, 1])
        if bool(done.any()):
            index, where = order[done].sort(dim=-1)
            cdf = torch.cumsum((sorted_p[done] * keep[done]).gather(1, where), dim=-1)
            u = torch.stack([torch.rand((), generator=gens[r], dtype=torch.float64) for r in pending[done].tolist()])
            at = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).clamp(max=cdf.shape[1] - 1)
            out[pending[done]] = index.gather(1, at).squeeze(1)
        pending = pending[~done]
        if not len(pending):
            break
    return out


def _combine(
    constraints: Sequence[Constraint], states: Sequence[Any], slot: int, spec: PoemSpec, vocab: int
) -> torch.Tensor:
    """AND the constraints in priority order; one that would leave a poem no candidate is skipped
    for that poem (the documented back-off), so the first, mandatory ones always hold. The skipped
    rule sees the character drawn anyway and notes the break.

    The result is (vocab,) while every mask so far is the same for all poems (the Han and forced
    characters, say), else (batch, vocab): a batch of candidates pays per-row work only for rules
    whose masks differ per row.
    """
    allowed = torch.ones(vocab, dtype=torch.bool)
    for constraint, state in zip(constraints, states):
        mask = constraint.allowed(slot, spec, state)
        if mask is None:
            continue
        narrowed = allowed & mask
        ok = narrowed.any(dim=-1, keepdim=True)
        allowed = narrowed if bool(ok.all()) else torch.where(ok, narrowed, allowed)
    return allowed


class PoemWalk:
    """One request's walk over its slots: what to feed first, the masked draw for each slot, and
    the tokens that follow it. It owns everything that belongs to these poems (generators, the
    constraints' states, the ids drawn), so :func:`decode` runs one walk and
    :mod:`tangpoem_hf.serving` steps many walks through one batched LSTM step with the very same
    result."""

    def __init__(self, tokenizer: CharTokenizer, preprocessing: str, request: PoemRequest) -> None:
        self.tok, self.request, self.spec = tokenizer, request, request.spec
        # Row i * candidates + j is candidate j of poem i; candidate 0 has the poem's own seed, so
        # one candidate gives exactly the poem drawn without ranking.
        self.seeds = [candidate_seed(request.seed + i, j) for i in range(request.num) for j in range(request.width)]
        self.gens = [torch.Generator().manual_seed(s) for s in self.seeds]
        self.constraints: list[Constraint] = [HanOnly(), Forced(), *request.constraints]
        self.states = [c.start(self.spec, tokenizer, self.batch) for c in self.constraints]
        self.rows: list[list[int]] = [[] for _ in self.seeds]
        self.logp = torch.zeros(self.batch, dtype=torch.float64)  # summed log-probabilities of scored tokens
        self.scored = 0  # tokens scored per row
        self.punct = tokenizer.punct_ids()
        self.slot = 0
        self.finished = False
        self.context: list[int] = []  # fed before the first slot; empty for a bare-character model
        if preprocessing == "ours":
            self.context = poem_context(tokenizer, self.spec.form, self.spec.lines, self.spec.title, self.spec.keywords)
        elif 0 not in self.spec.forced:
            raise InputError("This model was trained without start markers: give the first character.")
        self.end_id = tokenizer.eos_id if preprocessing == "ours" else None
        self.regrouped: torch.Tensor | None = None  # rows the LSTM state must follow after the last feed
        self.coherence = load_coherence() if request.coherence else None

    @property
    def batch(self) -> int:
        return len(self.seeds)

    def choose(self, logits: torch.Tensor | None) -> list[int]:
        """The ids for the current slot, one per row, from (batch, vocab) CPU logits."""
        slot, batch = self.slot, self.batch
        if logits is None:  # a bare-character model: the forced first character starts it
            chosen = torch.full((batch,), self.tok.index[self.spec.forced[0]], dtype=torch.long)
        else:
            allowed = _combine(self.constraints, self.states, slot, self.spec, len(self.tok))
            weighed = logits
            for c, state in zip(self.constraints, self.states):
                weighed = c.reweigh(slot, self.spec, state, weighed)
            masked = torch.where(allowed, weighed, -math.inf)
            t, k, p = self.request.temperature, self.request.top_k, self.request.top_p
            chosen = _sample_rows(masked, t, k, p, self.gens)
            self._score(logits, chosen)
        for c, state in zip(self.constraints, self.states):
            c.observe(slot, self.spec, state, chosen, logits)
        ids = chosen.tolist()
        for row, i in zip(self.rows, ids):
            row.append(i)
        return ids

    def _score(self, logits: torch.Tensor, ids: torch.Tensor) -> None:
        """Add the model's own log-probability of ``ids`` (temperature 1, no constraint masks)."""
        logp = torch.log_softmax(logits.double(), dim=-1)
        self.logp += logp.gather(1, ids.unsqueeze(1)).squeeze(1)
        self.scored += 1

    def advance(self, chosen: list[int]) -> torch.Tensor:
        """The (batch, 1 or 2) ids to feed after ``chosen``, with ，/。 after a line. After the last
        slot it is the last character and 「。」, fed only to score them and the end marker."""
        line, col = self.spec.position(self.slot)
        self.slot += 1
        self.finished = self.slot == self.spec.slots
        step = torch.tensor(chosen, dtype=torch.long).unsqueeze(1)
        if col == self.spec.form - 1:
            mark = self.punct.get(line_end(line, self.spec.lines))
            if mark is not None:
                step = torch.cat([step, torch.full((self.batch, 1), mark, dtype=torch.long)], dim=1)
        return step

    def fed(self, step: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Score the line-end mark (and, at the end, the end marker) from the (batch, L, vocab)
        logits of feeding ``step``; return the last position's logits for the next draw."""
        if step.shape[1] == 2:
            self._score(logits[:, -2], step[:, 1])
        if self.finished and self.end_id is not None:
            self._score(logits[:, -1], torch.full((self.batch,), self.end_id, dtype=torch.long))
        return logits[:, -1]

    def score(self, row: int) -> float:
        """:func:`score_lines` of the row's poem (its whole lines so far), from the log-probabilities
        gathered while drawing, plus the request's weight times the lines' coherence."""
        form = self.spec.form
        ids = self.rows[row][: len(self.rows[row]) // form * form]
        lines = [self.tok.decode(ids[i : i + form]) for i in range(0, len(ids), form)]
        value = _score(float(self.logp[row]), self.scored, lines, self.spec.forced, self.request.score)
        if self.coherence is not None:
            where = table_ids(self.tok, self.coherence)[torch.tensor(ids, dtype=torch.long)].view(-1, form)
            value += self.request.coherence * self.coherence.score_ids(where.tolist())
        return value

    def poem(self, row: int, ids: Sequence[int] | None = None) -> Poem:
        """Poem ``row`` as drawn so far (partial while streaming), with the notes of broken rules;
        or the partial poem of ``ids``, a copy another thread took of the row (without notes)."""
        form = self.spec.form
        chars = [self.tok.tokens[i] for i in (self.rows[row] if ids is None else ids)]
        full, rest = divmod(len(chars), form)
        lines = ["".join(chars[i * form : (i + 1) * form]) for i in range(full)]
        partial = "".join(chars[full * form :]) if rest else ""
        poem, candidate = divmod(row, self.request.width)
        seed = self.request.seed + poem
        if ids is not None:
            return Poem(lines, form, seed, total_lines=self.spec.lines, partial=partial, candidate=candidate)
        notes = [*self.request.notes, *(n for c, st in zip(self.constraints, self.states) for n in c.notes(st, row))]
        score = self.score(row) if self.finished else None
        return Poem(lines, form, seed, self.spec.lines, partial, notes, score, candidate=candidate)

    def poems(self) -> list[Poem]:
        """The finished poems, one per requested poem: its best candidate, the others attached."""
        n = self.request.width
        out = []
        for i in range(self.request.num):
            ranked = sorted((self.poem(r) for r in range(i * n, (i + 1) * n)), key=lambda p: -(p.score or 0.0))
            best = ranked[0]
            best.others = ranked[1:]
            out.append(best)
        return out


class LineWalk(PoemWalk):
    """A beam over lines: each line is drawn ``line_candidates`` times for each of the ``beam``
    best partial poems, all in one batch; after the line the best distinct partial poems (by
    :meth:`score`) are kept and each goes on in ``line_candidates`` rows. One bad line no longer
    sinks the poem, and the LSTM state after each kept prefix is carried on, never recomputed.

    Row ``(i * beam + b) * line_candidates + k`` is candidate ``k`` of beam ``b`` of poem ``i``.
    The rules run inside the same walk: each rule's :meth:`~tangpoem_hf.constraints.Constraint.select`
    gives its state for the kept rows, so every rule holds exactly as in a poem drawn whole. Each line's
    rows draw with generators seeded by the poem's seed, the line and the row: deterministic per seed.
    """

    def fed(self, step: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        nxt = super().fed(step, logits)
        self.regrouped = None
        if self.finished or self.slot % self.spec.form:
            return nxt
        rows = self._keep()
        self.regrouped = rows
        self.rows = [list(self.rows[r]) for r in rows.tolist()]
        self.logp = self.logp[rows]
        self.states = [c.select(s, rows) for c, s in zip(self.constraints, self.states)]
        line, width = self.slot // self.spec.form, self.request.width
        self.seeds = [
            candidate_seed(self.request.seed + i, line * width + j)
            for i in range(self.request.num)
            for j in range(width)
        ]
        self.gens = [torch.Generator().manual_seed(s) for s in self.seeds]
        return nxt[rows]

    def _keep(self) -> torch.Tensor:
        """For every row, the row it continues: the ``beam`` best distinct partial poems of each
        poem, each ``line_candidates`` times (the best ones again when fewer are distinct)."""
        width, k = self.request.width, self.request.line_candidates
        out = []
        for i in range(self.request.num):
            ranked = sorted(range(i * width, (i + 1) * width), key=lambda r: -self.score(r))
            best, seen = [], set()
            for r in ranked:
                if tuple(self.rows[r]) not in seen:
                    seen.add(tuple(self.rows[r]))
                    best.append(r)
            parents = [best[b % len(best)] for b in range(self.request.beam)]
            out += [p for p in parents for _ in range(k)]
        return torch.tensor(out, dtype=torch.long)

    def poems(self) -> list[Poem]:
        """The best finished poem of each request, the other distinct ones attached (best first)."""
        out = []
        for best in super().poems():
            seen, others = {best.text}, []
            for p in best.others:
                if p.text not in seen:
                    seen.add(p.text)
                    others.append(p)
            best.others = others
            out.append(best)
        return out


def make_walk(tokenizer: CharTokenizer, preprocessing: str, request: PoemRequest) -> PoemWalk:
    """The walk the request asks for: whole-poem candidates, or a line search."""
    return (LineWalk if request.search == "lines" else PoemWalk)(tokenizer, preprocessing, request)


@torch.inference_mode()
def decode(model: TangPoemLSTM, walk: PoemWalk) -> Iterator[int]:
    """Draw every character slot of the walk's poems; yield each slot's index once it is drawn."""
    device = next(model.parameters()).device
    state = None

    def feed(ids: torch.Tensor) -> torch.Tensor:
        nonlocal state
        out = model(ids.to(device), state=state)
        state = out.state
        return out.logits[:, -2:].float().cpu()

    logits = feed(torch.tensor([walk.context] * walk.batch))[:, -1] if walk.context else None
    while not walk.finished:
        slot = walk.slot
        step = walk.advance(walk.choose(logits))
        logits = walk.fed(step, feed(step))
        if walk.regrouped is not None:  # a line search kept some rows: their states go on
            state = tuple(s[:, walk.regrouped.to(device)] for s in state)
        yield slot


def candidate_seed(seed: int, candidate: int) -> int:
    """Candidate 0 keeps the seed; the others get well-spread seeds derived from it."""
    return seed if candidate == 0 else (seed + candidate * 0x9E3779B97F4A7C15) % 2**63


def _score(logp: float, tokens: int, lines: Sequence[str], forced: Collection[int], score: str = "mean") -> float:
    """The model's log-probability (``mean`` per token, or the ``sum``) less the repeat penalty."""
    value = logp / max(tokens, 1) if score == "mean" else logp
    return value - REPEAT_PENALTY * len(stray_repeats(list(lines), forced))


def poem_context(
    tokenizer: CharTokenizer, form: int, lines: int, title: str = "", keywords: Sequence[str] = ()
) -> list[int]:
    """What a model reads before a poem's first character: ``<bos>``, and for a control model the
    control segment (the form of ``form`` × ``lines``, the title and the keywords)."""
    if not has_controls(tokenizer):
        return [tokenizer.bos_id]
    return control_ids(tokenizer, form_name(form, lines), Control(title, tuple(keywords)))


@torch.inference_mode()
def token_logprobs(
    model: TangPoemLSTM, lines: Sequence[str], title: str = "", keywords: Sequence[str] = ()
) -> tuple[list[float], list[float]]:
    """Teacher-forced log-probabilities of a poem's characters, and of its ，/。 and end marker,
    read the way the decoder reads them (from ``<bos>`` and, for a control model, the control)."""
    tok = model.tokenizer
    text = join_lines(lines)
    context = poem_context(tok, len(lines[0]), len(lines), title, keywords)
    ids = context + tok.encode(text, add_eos=True)
    device = next(model.parameters()).device
    logp = torch.log_softmax(model(torch.tensor([ids[:-1]], device=device)).logits[0].double().cpu(), dim=-1)
    start = len(context) - 1
    picked = logp[start:].gather(1, torch.tensor(ids[len(context) :]).unsqueeze(1)).squeeze(1).tolist()
    marks = set(tok.punct_ids().values()) | {tok.eos_id}
    chars = [v for v, i in zip(picked, ids[len(context) :]) if i not in marks]
    others = [v for v, i in zip(picked, ids[len(context) :]) if i in marks]
    return chars, others


def score_lines(
    model: TangPoemLSTM,
    lines: Sequence[str],
    forced: Collection[int] = (),
    title: str = "",
    keywords: Sequence[str] = (),
) -> float:
    """The candidates' ranking score: the mean log-probability per token under the model (the
    characters, each line's ，/。 and the end marker, so a line or a poem that stops where the
    model would not is marked down), minus ``REPEAT_PENALTY`` per stray repeated character
    (not a 叠字 pair, not only at ``forced`` slots). Why this one: ``experiments/score_study.py`` and
    docs/reports/evaluation.md. ``title`` and ``keywords`` are the control a control model reads first."""
    chars, marks = token_logprobs(model, lines, title, keywords)
    return _score(sum(chars) + sum(marks), len(chars) + len(marks), lines, forced)


# --- the public functions -------------------------------------------------------------------------


def stream_poem(model: TangPoemLSTM, request: PoemRequest | None = None, **kwargs: Any) -> Iterator[Poem]:
    """Yield the poem as it grows, one character at a time; the last item is the whole poem.

    Pass a :class:`PoemRequest` or its :meth:`PoemRequest.build` keyword arguments. With several
    candidates the first one streams, and the last item is the best, the others attached.
    """
    req = as_request(model, request, kwargs)
    if req.num != 1:
        raise InputError(f"stream_poem writes one poem, not num={req.num}; use generate_poems.")
    walk = make_walk(model.tokenizer, model.config.preprocessing, req)
    for slot in decode(model, walk):
        if slot + 1 < req.spec.slots:
            yield walk.poem(0)
    yield walk.poems()[0]


def generate_poem(model: TangPoemLSTM, request: PoemRequest | None = None, **kwargs: Any) -> Poem:
    """One poem of exactly ``lines`` lines of ``form`` characters; see :meth:`PoemRequest.build`."""
    return deque(stream_poem(model, request, **kwargs), maxlen=1)[0]


def generate_poems(model: TangPoemLSTM, num: int = 1, request: PoemRequest | None = None, **kwargs: Any) -> list[Poem]:
    """``num`` poems decoded together; poem ``i`` uses seed ``seed + i``, so each one equals the
    poem :func:`generate_poem` gives for that seed, whatever the batch size."""
    req = as_request(model, request, {**kwargs, "num": num} if request is None else kwargs)
    walk = make_walk(model.tokenizer, model.config.preprocessing, req)
    deque(decode(model, walk), maxlen=0)
    return walk.poems()


def rewrite_poem(model: TangPoemLSTM, poem: Poem | str | Sequence[str], keep: Iterable[int], **kwargs: Any) -> Poem:
    """Keep the lines at indices ``keep`` (0-based) byte for byte and write the others anew.

    The kept lines are forced slots: the model reads the kept lines before a rewritten one as its
    own context, and the kept lines after it bind the rhyme group, the tone pattern and the
    acrostic heads (give ``acrostic=`` again) through the same constraints as any poem. Keyword
    arguments are :meth:`PoemRequest.build`'s (``rhyme``, ``tone``, ``seed``, ``candidates``…);
    the form and line count come from ``poem``. A kept line that breaks an asked rule is named in
    the result's notes.
    """
    return generate_poem(model, rewrite_request(model.tokenizer, poem, keep, **kwargs))
