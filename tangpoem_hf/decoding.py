"""The only place poems are produced: one step loop over the LSTM state, with constraints.

The decoder walks the poem's character slots (line × column) and samples one character per slot,
feeding ，/。 itself at line ends. The shape is therefore guaranteed by construction, never cut
afterwards, and the loop always ends after ``form × lines`` samples. What may stand in a slot is
decided by small composable :class:`Constraint` objects, like transformers' LogitsProcessors.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from .errors import InputError
from .modeling import TangPoemLSTM
from .text import COMMA, PERIOD, is_han, normalize_punctuation, to_traditional
from .tokenizer import CharTokenizer

MAX_INPUT_CHARS = 200
MIN_LINES, MAX_LINES = 2, 16
MAX_BATCH = 1000
NUCLEUS_GUESSES = (1024, 4096)  # top-p sampling: candidates tried before a full sort


@dataclass(frozen=True)
class PoemSpec:
    """The validated request: shape, forced characters per slot, and the conditioning prefix."""

    form: int
    lines: int
    forced: dict[int, str] = field(default_factory=dict)  # slot index → character
    prefix: str = ""

    @property
    def slots(self) -> int:
        return self.form * self.lines

    def position(self, slot: int) -> tuple[int, int]:
        return divmod(slot, self.form)


@dataclass
class Poem:
    """A finished (or, while streaming, partial) poem."""

    lines: list[str]
    form: int
    seed: int
    total_lines: int = 0  # the poem's length when finished; 0 means len(lines)
    partial: str = ""  # the unfinished line while streaming

    @property
    def finished(self) -> bool:
        return not self.partial and len(self.lines) == (self.total_lines or len(self.lines))

    @property
    def text(self) -> str:
        """Couplets on separate rows: 「，」 after odd lines, 「。」 after even ones."""
        rows, parts = [], []
        total = self.total_lines or len(self.lines)
        for i, line in enumerate(self.lines):
            parts.append(line + (COMMA if i % 2 == 0 and i + 1 < total else PERIOD))
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
        return Poem(lines, self.form, self.seed, self.total_lines, to_traditional(self.partial))

    def __str__(self) -> str:
        return self.text


class Constraint:
    """Masks what may stand in a slot. Subclasses keep per-poem state via ``start``/``observe``."""

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> None:
        """Called once before decoding a batch."""

    def allowed(self, slot: int, spec: PoemSpec) -> torch.Tensor | None:
        """A (batch, vocab) or (vocab,) bool mask of allowed ids, or None for no restriction."""
        return None

    def observe(self, slot: int, spec: PoemSpec, chosen: torch.Tensor) -> None:
        """Called with the (batch,) ids sampled for ``slot``."""


class HanOnly(Constraint):
    """A character slot holds a Han character: never punctuation, a special token or Latin."""

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> None:
        self.mask = torch.zeros(len(tokenizer), dtype=torch.bool)
        self.mask[tokenizer.han_ids()] = True

    def allowed(self, slot: int, spec: PoemSpec) -> torch.Tensor:
        return self.mask


class Forced(Constraint):
    """The user's first characters or acrostic heads, at their slots."""

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> None:
        self.ids = {slot: tokenizer.index[ch] for slot, ch in spec.forced.items()}
        self.vocab = len(tokenizer)

    def allowed(self, slot: int, spec: PoemSpec) -> torch.Tensor | None:
        if slot not in self.ids:
            return None
        mask = torch.zeros(self.vocab, dtype=torch.bool)
        mask[self.ids[slot]] = True
        return mask


# --- input checking: every user value passes here once ---------------------------------------


def _describe(chars: Sequence[str]) -> str:
    return ", ".join(repr(ch) if ch.isprintable() and not ch.isspace() else f"U+{ord(ch):04X}" for ch in chars)


def check_chars(value: object, name: str, tokenizer: CharTokenizer, allow_punct: bool = False) -> str:
    """Han characters the model knows, converted into its script; else one clear sentence."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, not {type(value).__name__}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{name} contains invalid Unicode (an unpaired surrogate).") from None
    text = value.strip()
    if not text:
        raise InputError(f"{name} is empty: give at least one Chinese character.")
    if len(text) > MAX_INPUT_CHARS:
        raise InputError(f"{name} is too long: {len(text)} characters, at most {MAX_INPUT_CHARS}.")
    if allow_punct:
        text = normalize_punctuation(text)
    bad = sorted({ch for ch in text if not is_han(ch) and not (allow_punct and ch in COMMA + PERIOD)})
    if bad:
        raise InputError(f"{name} may hold only Chinese characters, but contains {_describe(bad)}.")
    converted = tokenizer.normalize(text)
    unknown = sorted({ch for ch in converted if ch not in tokenizer})
    if unknown:
        raise InputError(f"The model does not know the character(s) {''.join(unknown)} in {name}.")
    return converted


def _number(value: object, name: str, kind: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name} must be a number, not {value!r}.")
    if kind is int and not float(value).is_integer():
        raise InputError(f"{name} must be a whole number, not {value!r}.")
    if not math.isfinite(value):
        raise InputError(f"{name} must be finite, not {value!r}.")
    return value


def check_sampling(temperature: object, top_k: object, top_p: object, seed: object) -> tuple[float, int, float, int]:
    """Sampling settings in range; an unset seed becomes a fresh random one (and is reported)."""
    t = float(_number(temperature, "temperature", float))
    if not 0.0 < t <= 10.0:
        raise InputError(f"temperature must be above 0 and at most 10, not {temperature!r}.")
    k = 0
    if top_k is not None:
        k = int(_number(top_k, "top_k", int))
        if k < 1:
            raise InputError(f"top_k must be at least 1 (or unset for no limit), not {top_k!r}.")
    p = float(_number(top_p, "top_p", float))
    if not 0.0 < p <= 1.0:
        raise InputError(f"top_p must lie in (0, 1], not {top_p!r}.")
    if seed is None:
        s = int.from_bytes(os.urandom(4), "little")
    else:
        s = int(_number(seed, "seed", int))
        if not 0 <= s < 2**63:
            raise InputError(f"seed must be a non-negative integer below 2**63, not {seed!r}.")
    return t, k, p, s


def make_spec(
    tokenizer: CharTokenizer,
    first: str | None = None,
    acrostic: str | None = None,
    form: object = 7,
    lines: object = None,
    prefix: str | None = None,
) -> PoemSpec:
    """Validate the shape request; the acrostic fixes the line count to its number of heads."""
    if isinstance(form, str) and form.strip() in ("5", "7", "五言", "七言"):
        form = 5 if form.strip() in ("5", "五言") else 7
    if isinstance(form, bool) or form not in (5, 7):
        raise InputError(f"form must be 5 (五言) or 7 (七言), not {form!r}.")
    if first is not None and acrostic is not None:
        raise InputError("Give either first characters or acrostic heads, not both.")
    forced: dict[int, str] = {}
    if acrostic is not None:
        if isinstance(acrostic, str) and len(acrostic.strip()) > MAX_LINES:  # the shape error comes first
            raise InputError(
                f"An acrostic has one head per line, at most {MAX_LINES} heads; got {len(acrostic.strip())}."
            )
        heads = check_chars(acrostic, "acrostic", tokenizer)
        if not MIN_LINES <= len(heads) <= MAX_LINES:
            raise InputError(f"An acrostic has one head per line: {MIN_LINES} to {MAX_LINES} heads, not {len(heads)}.")
        if lines is not None and lines != len(heads):
            raise InputError(f"An acrostic of {len(heads)} heads makes {len(heads)} lines, not {lines!r}.")
        lines = len(heads)
        forced = {i * form: ch for i, ch in enumerate(heads)}
    lines = 4 if lines is None else lines
    lines = int(_number(lines, "lines", int))
    if not MIN_LINES <= lines <= MAX_LINES:
        raise InputError(f"lines must be between {MIN_LINES} and {MAX_LINES}, not {lines}.")
    if first is not None:
        chars = check_chars(first, "first", tokenizer)
        if len(chars) > form * lines:
            raise InputError(f"first has {len(chars)} characters but the poem holds only {form * lines}.")
        forced = dict(enumerate(chars))
    text_prefix = check_chars(prefix, "prefix", tokenizer, allow_punct=True) if prefix else ""
    return PoemSpec(form=form, lines=lines, forced=forced, prefix=text_prefix)


# --- the loop ---------------------------------------------------------------------------------


def _sample(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gen: torch.Generator) -> int:
    """One draw from a masked row, by inverse CDF with this poem's own generator.

    Working in float64 with a per-poem generator makes the result independent of batch size.
    """
    logits = logits.double() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        # A partial sort (topk) of the likeliest characters is ~20x faster than sorting the whole
        # vocabulary, and gives the same nucleus whenever it already holds top_p of the mass.
        for guess in (*NUCLEUS_GUESSES, probs.numel()):
            sorted_p, order = torch.topk(probs, min(guess, probs.numel()))
            mass = torch.cumsum(sorted_p, 0)  # the same running sums a full sort would give
            if mass[-1] >= top_p:
                break
        keep = mass - sorted_p < top_p
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_p[keep])
    cdf = torch.cumsum(probs, 0)
    u = torch.rand((), generator=gen, dtype=torch.float64) * cdf[-1]
    return int(torch.searchsorted(cdf, u.unsqueeze(0)).clamp(max=len(cdf) - 1))


def _combine(constraints: Sequence[Constraint], slot: int, spec: PoemSpec, batch: int, vocab: int) -> torch.Tensor:
    """AND the constraints in priority order; one that would leave a poem no candidate is skipped
    for that poem (the documented back-off), so the first, mandatory ones always hold."""
    allowed = torch.ones(batch, vocab, dtype=torch.bool)
    for constraint in constraints:
        mask = constraint.allowed(slot, spec)
        if mask is None:
            continue
        narrowed = allowed & mask
        ok = narrowed.any(dim=-1, keepdim=True)
        allowed = torch.where(ok, narrowed, allowed)
    return allowed


class PoemWalk:
    """One request's walk over its slots: what to feed first, the masked draw for each slot, and
    the tokens that follow it. :func:`decode` runs one walk; :mod:`tangpoem_hf.serving` steps
    many walks through one batched LSTM step, so both produce the very same poems."""

    def __init__(
        self,
        tokenizer: CharTokenizer,
        preprocessing: str,
        spec: PoemSpec,
        seeds: Sequence[int],
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        constraints: Sequence[Constraint] = (),
    ) -> None:
        self.tok, self.spec, self.seeds = tokenizer, spec, list(seeds)
        self.sampling = (temperature, top_k, top_p)
        self.gens = [torch.Generator().manual_seed(s) for s in self.seeds]
        self.constraints = [HanOnly(), Forced(), *constraints]
        for c in self.constraints:
            c.start(spec, tokenizer, len(self.seeds))
        self.punct = tokenizer.punct_ids()
        self.slot = 0
        self.context: list[int] = []  # fed before the first slot; empty for a bare-character model
        if preprocessing == "ours":
            if spec.prefix:
                self.context += tokenizer.encode(spec.prefix, add_bos=True, add_eos=True)
            self.context.append(tokenizer.bos_id)
        elif 0 not in spec.forced:
            raise InputError("This model was trained without start markers: give the first character.")

    @property
    def batch(self) -> int:
        return len(self.seeds)

    def choose(self, logits: torch.Tensor | None) -> list[int]:
        """The ids for the current slot, one per poem, from (batch, vocab) CPU logits."""
        slot, batch = self.slot, self.batch
        if logits is None:  # a bare-character model: the forced first character starts it
            chosen = torch.full((batch,), self.tok.index[self.spec.forced[0]], dtype=torch.long)
        else:
            allowed = _combine(self.constraints, slot, self.spec, batch, len(self.tok))
            masked = logits.masked_fill(~allowed, -math.inf)
            chosen = torch.tensor([_sample(masked[b], *self.sampling, self.gens[b]) for b in range(batch)])
        for c in self.constraints:
            c.observe(slot, self.spec, chosen)
        return chosen.tolist()

    def advance(self, chosen: list[int]) -> torch.Tensor | None:
        """The (batch, 1 or 2) ids to feed after ``chosen`` (with ，/。 at a line end); None when done."""
        line, col = self.spec.position(self.slot)
        self.slot += 1
        if self.slot == self.spec.slots:
            return None
        step = torch.tensor(chosen, dtype=torch.long).unsqueeze(1)
        if col == self.spec.form - 1:
            mark = self.punct.get(COMMA if line % 2 == 0 else PERIOD)
            if mark is not None:
                step = torch.cat([step, torch.full((self.batch, 1), mark, dtype=torch.long)], dim=1)
        return step


@torch.inference_mode()
def decode(model: TangPoemLSTM, walk: PoemWalk) -> Iterator[tuple[int, list[int]]]:
    """Yield (slot, chosen ids per poem) for every character slot of the walk's poems."""
    device = next(model.parameters()).device
    state = None

    def feed(ids: torch.Tensor) -> torch.Tensor:
        nonlocal state
        out = model(ids.to(device), state=state)
        state = out.state
        return out.logits[:, -1].float().cpu()

    logits = feed(torch.tensor([walk.context] * walk.batch)) if walk.context else None
    while True:
        slot = walk.slot
        chosen = walk.choose(logits)
        yield slot, chosen
        step = walk.advance(chosen)
        if step is None:
            return
        logits = feed(step)


def poems_from(tok: CharTokenizer, spec: PoemSpec, rows: list[list[int]], seeds: Sequence[int]) -> list[Poem]:
    poems = []
    for ids, seed in zip(rows, seeds):
        chars = [tok.tokens[i] for i in ids]
        full, rest = divmod(len(chars), spec.form)
        lines = ["".join(chars[i * spec.form : (i + 1) * spec.form]) for i in range(full)]
        partial = "".join(chars[full * spec.form :]) if rest else ""
        poems.append(Poem(lines, spec.form, seed, total_lines=spec.lines, partial=partial))
    return poems


def verse_constraints(rhyme: object, tone: object, rhyme_group: object) -> list[Constraint]:
    """The regulated-verse constraints asked for (validated there; imported late: it imports us)."""
    if rhyme is False and tone is None and rhyme_group is None:
        return []
    from .prosody import prosody_constraints

    return prosody_constraints(rhyme=rhyme, tone=tone, rhyme_group=rhyme_group)


def request_walk(
    model: TangPoemLSTM,
    num: int = 1,
    first: str | None = None,
    acrostic: str | None = None,
    form: int = 7,
    lines: int | None = None,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float = 0.9,
    seed: int | None = None,
    prefix: str | None = None,
    constraints: Sequence[Constraint] = (),
    rhyme: bool = False,
    tone: str | None = None,
    rhyme_group: str | None = None,
) -> PoemWalk:
    """Check one request (every rule lives in the functions it calls) and set up the walk of its
    ``num`` poems; poem ``i`` gets seed ``seed + i``. The arguments are :func:`stream_poem`'s."""
    tok = model.tokenizer
    assert tok is not None, "a model loaded with from_pretrained carries its tokenizer"
    spec = make_spec(tok, first=first, acrostic=acrostic, form=form, lines=lines, prefix=prefix)
    t, k, p, s = check_sampling(temperature, top_k, top_p, seed)
    constraints = [*verse_constraints(rhyme, tone, rhyme_group), *constraints]
    seeds = [s + i for i in range(num)]
    return PoemWalk(tok, model.config.preprocessing, spec, seeds, t, k, p, constraints)


def stream_poem(
    model: TangPoemLSTM,
    first: str | None = None,
    acrostic: str | None = None,
    form: int = 7,
    lines: int | None = None,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float = 0.9,
    seed: int | None = None,
    prefix: str | None = None,
    constraints: Sequence[Constraint] = (),
    rhyme: bool = False,
    tone: str | None = None,
    rhyme_group: str | None = None,
) -> Iterator[Poem]:
    """Yield the poem as it grows, one character at a time; the last item is the whole poem.

    ``rhyme``, ``tone`` ("relaxed"/"strict") and ``rhyme_group`` ask for regulated verse; see
    :mod:`tangpoem_hf.prosody`.
    """
    walk = request_walk(
        model, 1, first, acrostic, form, lines, temperature, top_k, top_p, seed, prefix, constraints, rhyme, tone,
        rhyme_group,
    )  # fmt: skip
    ids: list[int] = []
    for _, chosen in decode(model, walk):
        ids.append(chosen[0])
        yield poems_from(walk.tok, walk.spec, [ids], walk.seeds)[0]


def generate_poem(model: TangPoemLSTM, **kwargs) -> Poem:
    """One poem of exactly ``lines`` lines of ``form`` characters; see :func:`stream_poem`."""
    return deque(stream_poem(model, **kwargs), maxlen=1)[0]


def generate_poems(
    model: TangPoemLSTM,
    num: int,
    first: str | None = None,
    acrostic: str | None = None,
    form: int = 7,
    lines: int | None = None,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float = 0.9,
    seed: int | None = None,
    prefix: str | None = None,
    constraints: Sequence[Constraint] = (),
    rhyme: bool = False,
    tone: str | None = None,
    rhyme_group: str | None = None,
) -> list[Poem]:
    """``num`` poems decoded together; poem ``i`` uses seed ``seed + i``, so each one equals the
    poem :func:`generate_poem` gives for that seed, whatever the batch size."""
    n = int(_number(num, "num", int))
    if not 1 <= n <= MAX_BATCH:
        raise InputError(f"num must be between 1 and {MAX_BATCH}, not {num!r}.")
    walk = request_walk(
        model, n, first, acrostic, form, lines, temperature, top_k, top_p, seed, prefix, constraints, rhyme, tone,
        rhyme_group,
    )  # fmt: skip
    rows: list[list[int]] = [[] for _ in walk.seeds]
    for _, chosen in decode(model, walk):
        for row, c in zip(rows, chosen):
            row.append(c)
    return poems_from(walk.tok, walk.spec, rows, walk.seeds)
