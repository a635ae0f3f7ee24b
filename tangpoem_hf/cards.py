"""What the cards say: the model card, the Space card and the dataset card the Hub shows.

Each builder returns a ``huggingface_hub`` card object (YAML metadata the Hub indexes, then the text)
and writes no file and reaches no network: :mod:`tangpoem_hf.hub` stages the folders they go into and
pushes them.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData, SpaceCard, SpaceCardData

from .decoding import generate_poem
from .errors import InputError
from .modeling import MODEL_CARD_TEMPLATE, TangPoemLSTM
from .options import default_draw_text
from .paths import portable_path

LIBRARY_NAME = "tangpoem"
LICENSE = "mit"
MODEL_TAGS = ["poetry", "tang-poetry", "chinese", "lstm", "char-level", "pytorch"]
DEFAULT_DATASET_NAME = "tang-poems"  # what tangpoem push dataset publishes, under the user's namespace
CORPUS_URL = "https://github.com/chinese-poetry/chinese-poetry"

# Sample requests for the card: (description, generate_poem kwargs). Seeds are fixed, so a card is
# reproducible for a given model.
SAMPLE_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("五言绝句，首字「山」· 5-character quatrain starting with 山", {"first": "山", "form": 5, "lines": 4}),
    ("七言绝句，首字「月」· 7-character quatrain starting with 月", {"first": "月", "form": 7, "lines": 4}),
    ("七言藏头「春夏秋冬」· acrostic", {"acrostic": "春夏秋冬", "form": 7}),
    ("五言律诗，首字「江」· 5-character regulated verse", {"first": "江", "form": 5, "lines": 8}),
]

# Versions the Space takes instead of the installed one.
SPACE_PINS = {"torch": "2.13.0"}  # the CPU wheel here is 2.13.0+cpu; the Space takes the PyPI build


def default_dataset(repo_id: str | None) -> list[str]:
    """``USER/tang-poems``: the corpus as ``tangpoem push dataset`` publishes it for that user."""
    if repo_id and "/" in repo_id:
        return [f"{repo_id.split('/')[0]}/{DEFAULT_DATASET_NAME}"]
    return []


# --- the model card ------------------------------------------------------------------------------


def sample_poems(model: TangPoemLSTM, seed: int = 0) -> list[tuple[str, str]]:
    """(description, poem text) for each sample request the model's vocabulary can serve, drawn
    with the one default of every interface (:class:`~tangpoem_hf.options.GenerationOptions`: the
    rules and the search ``tangpoem generate`` uses), so a card shows the poems its readers will get."""
    samples = []
    for description, kwargs in SAMPLE_REQUESTS:
        try:
            poem = generate_poem(model, seed=seed, **kwargs)
        except InputError:  # e.g. a tiny vocabulary without 山
            continue
        samples.append((f"{description} (seed {seed})", poem.text))
    return samples


def describe_data(finetuned: Mapping[str, Any]) -> str:
    """What a model was fine-tuned on, in words: the selection (poet, form, tag) and its size."""
    data = finetuned.get("data", {})
    kind, source, counts = data.get("kind"), portable_path(data.get("source")), data.get("poems", {})
    where = {
        "chinese-poetry": f"the chinese-poetry corpus (folder `{source}`)",
        "text-file": f"the text file `{source}`",
    }.get(kind, f"the dataset `{source}`")
    names = {"author": "poet", "form": "form", "tag": "tag"}
    filters = "; ".join(
        f"{names.get(k, k)}{'s' if len(v) > 1 else ''} {', '.join(v)}" for k, v in data.get("filters", {}).items() if v
    )
    selection = f"the poems of {where} with {filters}" if filters else f"all the poems of {where}"
    held = ", ".join(f"{counts[s]:,} {s}" for s in ("validation", "test") if counts.get(s))
    return f"{counts.get('train', 0):,} training poems: {selection}" + (f" (held out: {held})" if held else "")


def _whole_corpus(finetuned: Mapping[str, Any] | None) -> bool:
    """Trained, or fine-tuned, on the whole Tang corpus and its own splits (no selection of poems)."""
    data = (finetuned or {}).get("data", {})
    return not finetuned or (data.get("kind") == "chinese-poetry" and not data.get("filters"))


def _evaluation(
    perplexity: float | None,
    split: str,
    poems: int | None,
    model: TangPoemLSTM,
    finetuned: Mapping[str, Any] | None,
) -> list[str]:
    """The held-out figure with its split and poem count; a fine-tuned model's figure on its own
    data is set beside the base model's on the same poems, never where a corpus test figure stands."""
    if perplexity is None or not math.isfinite(perplexity):
        return ["Held-out perplexity: not measured.", ""]
    cfg = model.config
    tokens = "characters, ，/。 and the end marker" if cfg.preprocessing == "ours" else "characters"
    how = f"per real token: {tokens}; no padding; every poem from the model's start state, `{cfg.start_state}`"
    count = f", {poems:,} poems" if poems else ""
    if _whole_corpus(finetuned):
        return [f"Held-out perplexity ({split} split{count}, {how}): **{perplexity:.2f}**", ""]
    lines = [
        f"Held-out perplexity on the {split} split of the fine-tuning data{count} ({how}): **{perplexity:.2f}**",
        "",
    ]
    base = finetuned.get("base_val_perplexity")
    if split == "validation" and isinstance(base, (int, float)):
        lines += [f"The base model, before fine-tuning, on the same poems: {base:.2f}.", ""]
    lines += [
        "Measured on these poems only (" + describe_data(finetuned) + "): not comparable with a perplexity "
        "on the whole corpus's test split, such as the base model's own figure.",
        "",
    ]
    return lines


def _body(
    samples: Sequence[tuple[str, str]],
    training_config: Mapping[str, Any] | None,
    perplexity: float | None,
    perplexity_split: str,
    model: TangPoemLSTM,
    notes: str | None = None,
    comparison: Mapping[str, Any] | None = None,
    perplexity_poems: int | None = None,
    finetuned: Mapping[str, Any] | None = None,
) -> str:
    parts = [
        "The `tangpoem_hf` package is not on PyPI: install it from its source tree (`pip install .`) first.",
        "",
        "## Sample poems",
        "",
        f"Drawn as every interface (`tangpoem generate`, the app, the Python API) draws by default: "
        f"{default_draw_text()}.",
        "",
    ]
    if samples:
        for description, text in samples:
            parts += [f"**{description}**", "", *[f"> {row}  " for row in text.splitlines()], ""]
    else:
        parts += ["(None: the vocabulary lacks the sample characters.)", ""]
    cfg = model.config
    parts += [
        "## Model",
        "",
        f"Embedding {cfg.embedding_dim} → {cfg.num_layers}-layer LSTM {cfg.hidden_size} → linear over "
        f"{cfg.vocab_size} characters (tied weights: {cfg.tie_weights}, preprocessing: `{cfg.preprocessing}`), "
        f"{sum(p.numel() for p in model.parameters()):,} parameters.",
        "",
        "## Training",
        "",
    ]
    if finetuned:
        base = finetuned.get("base_model_id") or finetuned.get("base_model") or "an earlier model"
        parts += [f"Fine-tuned from `{base}` on {describe_data(finetuned)}.", ""]
        parts += [f"- {note}" for note in finetuned.get("data", {}).get("notes", [])]
        parts += [""] if finetuned.get("data", {}).get("notes") else []
    if notes:
        parts += [notes, ""]
    if training_config:
        parts += ["```json", json.dumps(dict(training_config), indent=2, ensure_ascii=False, default=str), "```", ""]
    else:
        parts += ["Training configuration not recorded.", ""]
    parts += ["## Evaluation", "", *_evaluation(perplexity, perplexity_split, perplexity_poems, model, finetuned)]
    if comparison:
        parts += [_comparison_table(comparison), ""]
    parts += [
        "## Data and limitations",
        "",
        _data_paragraph(training_config, finetuned)
        + " The model imitates form (line length, ，/。) and learns rhyme and tonal patterns only in part: the "
        'decoder\'s rules guarantee them, on by default (rhyme and relaxed tone; `tone="strict"` for strict, '
        "`free=True` for none). Nor does a model that draws left to right keep one season in mind (the bundled "
        "model names two of 春夏秋冬 in about 5% of its quatrains): the one-season rule, also on by default, "
        "refuses a second (`one_season=False` allows it).",
    ]
    return "\n".join(parts)


def _data_paragraph(training_config: Mapping[str, Any] | None, finetuned: Mapping[str, Any] | None) -> str:
    """Which poems the weights read, the base's included: a model pre-trained on Song must not be
    described as a Tang-only one, and every figure is on the Tang splits whatever else it read."""
    if finetuned:
        dynasties, weight = finetuned.get("base_dynasties"), finetuned.get("base_tang_weight")
    else:
        config = training_config or {}
        dynasties, weight = config.get("dynasties"), config.get("tang_weight")
    song = "song" in (dynasties or "tang").split(",")
    whole = _whole_corpus(finetuned)
    text = (
        f"{'Trained' if whole else 'The base model was trained'} on the "
        f"{'Tang and Song poems (全唐诗 and 全宋诗)' if song else 'Tang poems'} of [chinese-poetry]({CORPUS_URL})"
        + (f" (Tang weighted ×{weight:g})" if song and weight not in (None, 1) else "")
        + (", then on the Tang poems alone" if finetuned and song and whole else "")
        + ", cleaned and split 96/2/2 so that copies stay together (poems sharing a line take the split of "
        "their group's smallest id; no held-out poem shares a line with a training poem)."
    )
    if song:
        text += (
            " A Song poem that shares a whole line with a Tang validation or test poem never trained, and every "
            "figure here is on the Tang splits."
        )
    return text


def _comparison_table(comparison: Mapping[str, Any]) -> str:
    """Other models measured the same way (written by experiments/release_results.py)."""
    ppl, seconds, recipes = (comparison.get(k, {}) for k in ("test_perplexity", "training_seconds", "recipes"))
    rows = ["Compared on the same test split with the same code:", ""]
    rows += ["| model | recipe | training time | test perplexity |", "|---|---|---:|---:|"]
    for label, value in ppl.items():
        minutes = f"{seconds[label] / 60:.1f} min" if label in seconds else "?"
        rows.append(f"| {label} | {recipes.get(label, '')} | {minutes} | {value:.2f} |")
    if "lower_than_better_peer" in comparison:
        gain = comparison["lower_than_better_peer"]
        change = f"{gain:.1%} lower" if gain >= 0 else f"{-gain:.1%} higher"
        rows += ["", f"Test perplexity {change} than the better peer recipe's."]
    if "details" in comparison:
        rows += [f"Details: {comparison['details']} in the tangpoem repository."]
    return "\n".join(rows)


def build_model_card(
    model: TangPoemLSTM,
    repo_id: str | None = None,
    *,
    datasets: Sequence[str] | None = None,
    base_model: str | None = None,
    training_config: Mapping[str, Any] | None = None,
    perplexity: float | None = None,
    perplexity_split: str = "validation",
    samples: Sequence[tuple[str, str]] | None = None,
    sample_seed: int = 0,
    notes: str | None = None,
    comparison: Mapping[str, Any] | None = None,
    bundled: bool = False,
    perplexity_poems: int | None = None,
    finetuned: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The card: YAML metadata the Hub indexes, then usage, samples, training config, perplexity.

    ``perplexity_poems`` is how many poems the figure covers; ``finetuned`` is training.json's
    fine-tuning record (base, data, the base's figure on the same poems), which the card describes.
    """
    datasets = list(datasets) if datasets is not None else default_dataset(repo_id)
    eval_results = None
    if perplexity is not None and math.isfinite(perplexity) and datasets:
        eval_results = [
            EvalResult(
                task_type="text-generation",
                dataset_type=datasets[0],
                # A selection of poems is named, so the figure is not read as one on the whole dataset.
                dataset_name=datasets[0] if _whole_corpus(finetuned) else f"{datasets[0]}: {describe_data(finetuned)}",
                dataset_split=perplexity_split,
                metric_type="perplexity",
                metric_value=round(float(perplexity), 3),
            )
        ]
    data = ModelCardData(
        library_name=LIBRARY_NAME,
        license=LICENSE,
        language="zh",
        pipeline_tag="text-generation",
        datasets=datasets,
        tags=list(MODEL_TAGS),
        base_model=base_model,
        model_name=repo_id.split("/")[-1] if repo_id else "tangpoem-lstm",
        eval_results=eval_results,
    )
    if samples is None:
        samples = sample_poems(model, seed=sample_seed)
    body = _body(
        samples, training_config, perplexity, perplexity_split, model, notes, comparison, perplexity_poems, finetuned
    )
    title = repo_id.split("/")[-1] if repo_id else "tangpoem LSTM"
    return ModelCard.from_template(
        data, template_str=MODEL_CARD_TEMPLATE, repo_id=repo_id, title=title, body=body, bundled=bundled
    )


# --- the Space card ------------------------------------------------------------------------------


def installed_version(name: str) -> str:
    """The version the Space pins ``name`` to: the one installed here (the card's gradio ``sdk_version``
    and ``requirements.txt`` name the same one)."""
    if name in SPACE_PINS:
        return SPACE_PINS[name]
    version = importlib.metadata.version(name)
    return version.split("+", 1)[0]  # drop local build tags such as +cpu


def build_space_card(repo_id: str | None = None, model_ids: Sequence[str] = ()) -> SpaceCard:
    """README with the Space front matter: gradio SDK and version, app file, models used."""
    data = SpaceCardData(
        title="Tang Poem Generator 唐诗生成器",
        sdk="gradio",
        sdk_version=installed_version("gradio"),
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        app_file="app.py",
        license=LICENSE,
        models=list(model_ids),
        tags=["poetry", "chinese", "tang-poetry", "lstm"],
        emoji="📜",
        colorFrom="red",
        colorTo="yellow",
        pinned=False,
        short_description="Write Tang poems (唐诗) with a character-level LSTM",
        preload_from_hub=list(model_ids) or None,
    )
    model_line = (
        f"The model is [{model_ids[0]}](https://huggingface.co/{model_ids[0]}), set by the Space variable `MODEL_ID`."
        if model_ids
        else "The model is the one bundled in `tangpoem_hf/pretrained/`; the Space variable `MODEL_ID` overrides it."
    )
    content = (
        f"---\n{data.to_yaml()}\n---\n\n# 唐诗生成器 · Tang Poem Generator\n\n"
        "Continue a poem from its first characters (续写) or write an acrostic (藏头); the poem streams in "
        f"line by line.\n\n{model_line}\n\n"
        "Programmatic use:\n\n```python\nfrom gradio_client import Client\n\n"
        f'client = Client("{repo_id or "USER/SPACE"}")\n'
        'print(client.predict("续写", "山", "七言", 4, 0.8, 0, 0.9, 0, "", "简体", api_name="/generate")[1])\n```\n'
    )
    return SpaceCard(content)


# --- the dataset card ----------------------------------------------------------------------------


_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def build_dataset_card(counts: Mapping[str, int], forms: Mapping[str, int], repo_id: str | None = None) -> DatasetCard:
    """Dataset card: Parquet configs per split, licence, language, and how the corpus was cleaned."""
    total = sum(counts.values())
    size = next((label for limit, label in _SIZE_CATEGORIES if total < limit), "1M<n<10M")
    data = DatasetCardData(
        language="zh",
        license=LICENSE,
        pretty_name="Tang poems (cleaned, simplified) 唐诗",
        task_categories=["text-generation"],
        size_categories=size,
        source_datasets=["chinese-poetry"],
        tags=["poetry", "tang-poetry", "chinese", "classical-chinese"],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in counts],
            }
        ],
    )
    rows = "\n".join(f"| {split} | {n:,} |" for split, n in counts.items())
    form_rows = "\n".join(f"| {form} | {n:,} |" for form, n in forms.items())
    name = repo_id or "USER/tang-poems"
    content = (
        f"---\n{data.to_yaml()}\n---\n\n# Tang poems (唐诗), cleaned for language modelling\n\n"
        f"The Tang poems of [chinese-poetry]({CORPUS_URL}) as the tangpoem package prepares them: editorial "
        "notes and variant readings removed, punctuation mapped onto ，/。, converted to simplified script with "
        "OpenCC, poems with lost characters dropped, and split 96/2/2 so that copies stay together: poems "
        "that share a line form a group, and the group takes the split of a hash of its smallest poem id.\n\n"
        f'```python\nfrom datasets import load_dataset\n\nds = load_dataset("{name}")\n```\n\n'
        "Columns: `id`, `author`, `title`, `tags`, `text` (the cleaned poem), `form` (五绝/七绝/五律/七律/other).\n\n"
        f"| split | poems |\n| --- | --- |\n{rows}\n\n| form | poems |\n| --- | --- |\n{form_rows}\n"
    )
    return DatasetCard(content)
