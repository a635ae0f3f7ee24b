"""The metric suite behind ``tangpoem evaluate``: regulated verse, diversity and novelty of generated
poems, set beside real held-out poems, and the markdown report (docs/reports/evaluation.md)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .constraints import Constraint, PoemSpec, seasons_named
from .corpus import SPLIT_VERSION, build_splits, never_trained_on
from .decoding import generate_poems
from .errors import InputError
from .modeling import TangPoemLSTM
from .options import PLAIN_SAMPLE
from .prosody import check_poem, load_table
from .scoring import perplexity
from .text import FORM_SHAPES, split_lines
from .tokenizer import CharTokenizer

SETTINGS = {  # name → generate_poems keyword arguments
    "unconstrained": PLAIN_SAMPLE,
    "rhyme + relaxed tone": {**PLAIN_SAMPLE, "rhyme": True, "tone": "relaxed"},
}


@dataclass
class Reference:
    """What generated poems are compared with: the training split and held-out real poems."""

    train_lines: set[str]
    train_ngrams: set[str]  # 4-grams within lines
    first_chars: dict[str, list[str]]  # per form: first characters of training poems (with repeats)
    heldout: dict[str, list[str]]  # per form: validation + test poems


def _ngrams(line: str, n: int) -> list[str]:
    return [line[i : i + n] for i in range(len(line) - n + 1)]


def build_reference(source: str | None = None, simplified: bool = True, split_version: str | None = None) -> Reference:
    """Index the corpus once: training lines and 4-grams, first characters, held-out poems.

    The held-out poems are those a model trained under ``split_version`` (default: today's) never
    read (see :func:`~tangpoem_hf.corpus.never_trained_on`), so its held-out perplexity stays honest.
    """
    splits, _ = build_splits(source, simplified=simplified)
    lines: set[str] = set()
    ngrams: set[str] = set()
    firsts: dict[str, list[str]] = {f: [] for f in FORM_SHAPES}
    for text, form in zip(splits["train"]["text"], splits["train"]["form"]):
        for line in split_lines(text):
            lines.add(line)
            ngrams.update(_ngrams(line, 4))
        if form in firsts:
            firsts[form].append(text[0])
    heldout: dict[str, list[str]] = {f: [] for f in FORM_SHAPES}
    for split in ("validation", "test"):
        unseen = set(never_trained_on(splits, split, split_version or SPLIT_VERSION))
        for text, form in zip(splits[split]["text"], splits[split]["form"]):
            if form in heldout and text in unseen:
                heldout[form].append(text)
    return Reference(lines, ngrams, firsts, heldout)


class PerPoemFirst(Constraint):
    """Slot 0 of poem ``b`` holds ``ids[b]``: one batch, many different first characters."""

    def __init__(self, ids: Sequence[int]) -> None:
        self.ids = torch.as_tensor(list(ids), dtype=torch.long)

    def start(self, spec: PoemSpec, tokenizer: CharTokenizer, batch_size: int) -> int:
        return len(tokenizer)

    def allowed(self, slot: int, spec: PoemSpec, state: int) -> torch.Tensor | None:
        if slot != 0:
            return None
        mask = torch.zeros(len(self.ids), state, dtype=torch.bool)
        mask[torch.arange(len(self.ids)), self.ids] = True
        return mask


def _generate_from(model: TangPoemLSTM, ids: Sequence[int], seed: int, kwargs: dict) -> list[str]:
    """Poem texts starting with the given character ids, in one batch where the model allows."""
    if model.config.preprocessing == "ours":
        poems = generate_poems(model, num=len(ids), seed=seed, constraints=[PerPoemFirst(ids)], **kwargs)
        return [p.text for p in poems]
    # A model trained without start markers takes its first character as the prompt: one batch each.
    rows: dict[int, list[int]] = {}
    for i, c in enumerate(ids):
        rows.setdefault(c, []).append(i)
    texts = [""] * len(ids)
    for c, where in rows.items():
        first = model.tokenizer.tokens[c]
        poems = generate_poems(model, num=len(where), first=first, seed=seed + where[0], **kwargs)
        for i, p in zip(where, poems):
            texts[i] = p.text
    return texts


def poem_metrics(texts: Sequence[str], form: str, reference: Reference | None = None) -> dict[str, float]:
    """Format, rhyme and tone pass rates, distinct-1/2, the share naming two seasons (春…秋, see
    :class:`~tangpoem_hf.constraints.OneSeason`) and novelty of a set of poems of ``form``."""
    reports = [check_poem(t, form=form) for t in texts]
    n = max(len(reports), 1)
    lines = [line for r in reports for line in r.lines]
    chars = [ch for line in lines for ch in line]
    bigrams = [g for line in lines for g in _ngrams(line, 2)]
    out = {
        "poems": len(reports),
        "format": sum(r.format_ok for r in reports) / n,
        "rhyme": sum(bool(r.rhyme_ok) for r in reports) / n,
        "relaxed_tone": sum(bool(r.relaxed_ok) for r in reports) / n,
        "strict_tone": sum(bool(r.strict_ok) for r in reports) / n,
        "all_rules": sum(r.passed for r in reports) / n,
        "distinct_1": len(set(chars)) / max(len(chars), 1),
        "distinct_2": len(set(bigrams)) / max(len(bigrams), 1),
        "two_seasons": sum(len(seasons_named(r.lines)) > 1 for r in reports) / n,
    }
    if reference is not None:
        grams = [g for line in lines for g in _ngrams(line, 4)]
        out["copied_lines"] = sum(line in reference.train_lines for line in lines) / max(len(lines), 1)
        out["seen_4grams"] = sum(g in reference.train_ngrams for g in grams) / max(len(grams), 1)
    return out


def evaluate_model(
    model: TangPoemLSTM,
    num: int = 500,
    forms: Sequence[str] = tuple(FORM_SHAPES),
    seed: int = 0,
    reference: Reference | None = None,
    corpus: str | None = None,
    settings: dict[str, dict] | None = None,
    temperature: float = 0.8,
    top_p: float = 0.9,
    batch_size: int = 250,
) -> dict[str, Any]:
    """Per form: metrics of ``num`` generated poems per setting, beside real held-out poems.

    First characters are drawn (seeded) from the first characters of training poems of that form,
    so the poems start the way real ones do and vary; the same draw serves every setting.
    """
    reference = reference or build_reference(corpus, simplified=model.tokenizer.simplified)
    settings = SETTINGS if settings is None else settings
    tok, table = model.tokenizer, load_table()
    result: dict[str, Any] = {"num": num, "seed": seed, "temperature": temperature, "top_p": top_p, "forms": {}}
    for f_index, form in enumerate(forms):
        if form not in FORM_SHAPES:
            raise InputError(f"form must be one of {', '.join(FORM_SHAPES)}, not {form!r}.")
        size, lines = FORM_SHAPES[form]
        pool = [ch for ch in reference.first_chars[form] if ch in tok and ch in table] or [
            t for t in tok.tokens if t in table
        ]
        rng = random.Random(seed * 1000 + f_index)
        firsts = [tok.index[rng.choice(pool)] for _ in range(num)]
        row: dict[str, Any] = {}
        for name, kwargs in settings.items():
            texts: list[str] = []
            for start in range(0, num, batch_size):
                ids = firsts[start : start + batch_size]
                shape = {"form": size, "lines": lines, "temperature": temperature, "top_p": top_p, **kwargs}
                texts += _generate_from(model, ids, seed + start, shape)
            ppl = perplexity(model, texts)  # how likely the model finds its own poems under the setting
            row[name] = {**poem_metrics(texts, form, reference), "perplexity": ppl, "samples": texts[:3]}
        real = reference.heldout[form]
        row["heldout_perplexity"] = perplexity(model, real) if real else float("nan")
        row["real (held-out)"] = {**poem_metrics(real, form, reference), "perplexity": row["heldout_perplexity"]}
        result["forms"][form] = row
    return result


_COLUMNS = (
    ("format", "format"),
    ("rhyme", "rhyme"),
    ("relaxed_tone", "relaxed tone"),
    ("strict_tone", "strict tone"),
    ("distinct_1", "distinct-1"),
    ("distinct_2", "distinct-2"),
    ("two_seasons", "two seasons"),
    ("copied_lines", "copied lines"),
    ("seen_4grams", "seen 4-grams"),
    ("perplexity", "perplexity"),
)


def render_markdown(result: dict[str, Any], command: str = "", model_label: str = "") -> str:
    """``docs/reports/evaluation.md``: one table per form, then a few sample poems."""
    out = [
        "# Evaluation",
        "",
        f"Regenerate with `{command}`." if command else "",
        f"Model: {model_label}. " if model_label else "",
        f"{result['num']} poems per form and setting, seed {result['seed']}, temperature "
        f"{result['temperature']}, top-p {result['top_p']}; first characters drawn from the first "
        "characters of training poems of the form. Rates are shares of poems (format, rhyme, tone), "
        "of characters/bigrams (distinct-n), of poems naming two of 春夏秋冬 (two seasons), "
        "of lines (copied: appears verbatim in the training split) "
        "and of 4-grams (seen in training). The real poems are the validation and test poems the model "
        "never trained on, checked by the same checker (see [prosody.md](prosody.md) for the whole corpus). "
        "Perplexity is the model's per-token perplexity: on its own poems of each setting, and on the real "
        "held-out poems. "
        "Distinct-n is counted over the whole set, so it falls as the set grows: the real sets are smaller. "
        "How readers judge the poems, blind against real ones and setting against setting: "
        "[judging.md](judging.md).",
        "",
        "Goals with rhyme + relaxed tone: format 100%, rhyme ≥ 98%, relaxed tone ≥ 95%; copied lines ≤ 3%.",
        "",
    ]
    ruled = "rhyme + relaxed tone"
    goals = [("format", 1.0), ("rhyme", 0.98), ("relaxed_tone", 0.95)]
    summary = []
    for form, row in result["forms"].items():
        if ruled not in row:
            continue
        m, free, real = row[ruled], row.get("unconstrained", {}), row["real (held-out)"]
        met = all(m[k] >= v for k, v in goals) and m.get("copied_lines", 0) <= 0.03
        summary.append(
            f"| {form} | {'✓' if met else '✗'} | {100 * m['format']:.1f}% / {100 * m['rhyme']:.1f}% / "
            f"{100 * m['relaxed_tone']:.1f}% / {100 * m.get('copied_lines', 0):.1f}% | "
            f"{100 * free.get('rhyme', 0):.1f}% / {100 * free.get('relaxed_tone', 0):.1f}% | "
            f"{100 * real['rhyme']:.1f}% / {100 * real['relaxed_tone']:.1f}% |"
        )
    if summary:
        out += [
            "| form | goals met | rhyme + relaxed: format / rhyme / relaxed / copied | unconstrained: rhyme / relaxed "
            "| real held-out: rhyme / relaxed |",
            "|---|---|---:|---:|---:|",
            *summary,
            "",
        ]
    for form, row in result["forms"].items():
        out += [f"## {form}", "", f"Held-out perplexity on real {form}: {row['heldout_perplexity']:.2f}", ""]
        out.append("| poems | n | " + " | ".join(label for _, label in _COLUMNS) + " |")
        out.append("|---|---:|" + "---:|" * len(_COLUMNS))
        for name, metrics in row.items():
            if not isinstance(metrics, dict):
                continue
            cells = [
                "—" if k not in metrics else f"{metrics[k]:.1f}" if k == "perplexity" else f"{100 * metrics[k]:.1f}%"
                for k, _ in _COLUMNS
            ]
            out.append(f"| {name} | {metrics['poems']} | " + " | ".join(cells) + " |")
        out.append("")
        for name, metrics in row.items():
            if isinstance(metrics, dict) and metrics.get("samples"):
                out.append(f"Samples, {name}:")
                out.append("")
                out += ["    " + s.replace("\n", "\n    ") + "\n" for s in metrics["samples"]]
    return "\n".join(line for line in out if line is not None).rstrip() + "\n"
