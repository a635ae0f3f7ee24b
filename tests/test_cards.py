"""The cards say what the model holds: metadata the Hub indexes, samples drawn the way users draw,
the held-out figure with its split, and no path of the machine that wrote them."""

from __future__ import annotations

import re

from tangpoem_hf import TangPoemLSTM, cards
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.modeling import BUNDLED_MODEL_DIR

# --- the model card ------------------------------------------------------------------------------


def test_model_card_metadata_and_body(tiny_model: TangPoemLSTM) -> None:
    model = tiny_model
    card = cards.build_model_card(
        model, "alice/tangpoem", base_model="bob/tangpoem-base", training_config={"epochs": 3}, perplexity=87.5
    )
    data = card.data.to_dict()
    assert data["library_name"] == "tangpoem"
    assert data["license"] == "mit"
    assert data["language"] == "zh"
    assert data["pipeline_tag"] == "text-generation"
    assert data["datasets"] == ["alice/tang-poems"]
    assert {"poetry", "tang-poetry"} <= set(data["tags"])
    assert data["base_model"] == "bob/tangpoem-base"
    assert data["model-index"][0]["results"][0]["metrics"][0] == {"type": "perplexity", "value": 87.5}
    text = card.text
    assert 'TangPoemLSTM.from_pretrained("alice/tangpoem")' in text
    # Each request the vocabulary can serve has its sample, which starts with the requested characters.
    served = [
        (d, k)
        for d, k in cards.SAMPLE_REQUESTS
        if all(ch in model.tokenizer for ch in k.get("first", "") + k.get("acrostic", ""))
    ]
    assert "## Sample poems" in text and served
    for description, kwargs in served:
        rows = text.split(f"**{description} (seed 0)**\n\n")[1].split("\n\n")[0].splitlines()
        lines = [line for row in rows for line in row.removeprefix("> ").rstrip().rstrip("。").split("，")]
        heads = kwargs.get("acrostic") or kwargs["first"]
        assert "".join(line[0] for line in lines).startswith(heads) if "acrostic" in kwargs else lines[0][0] == heads
        assert len(lines) == len(kwargs.get("acrostic", "")) or len(lines) == kwargs["lines"]
    assert '"epochs": 3' in text
    assert (
        "Held-out perplexity (validation split, per real token: characters, ，/。 and the end marker; no padding; "
        "every poem from the model's start state, `zeros`): "
        "**87.50**" in text
    )


def test_card_without_base_model_or_perplexity(tiny_model: TangPoemLSTM) -> None:
    card = cards.build_model_card(tiny_model, None, datasets=["x/y"])
    assert "base_model" not in card.data.to_dict()
    assert card.data.datasets == ["x/y"]
    assert "Held-out perplexity: not measured." in card.text


# --- cards that say what they hold ---------------------------------------------------------------

# An absolute path after a space, quote, bracket or backtick: this machine's layout, not the model's.
ABSOLUTE_PATH = re.compile(r"""[\s"'(`](/[\w.-]+){2,}""")


def test_the_bundled_card_has_no_absolute_path_and_describes_its_data() -> None:
    card = (BUNDLED_MODEL_DIR / "README.md").read_text(encoding="utf-8")
    info = (BUNDLED_MODEL_DIR / "training.json").read_text(encoding="utf-8")
    assert not ABSOLUTE_PATH.search(card) and not ABSOLUTE_PATH.search(info)
    assert "on 54,155 training poems: all the poems of the chinese-poetry corpus (folder `quantangshi`)" in card
    assert "Held-out perplexity (test split, 935 poems, " in card


def test_the_bundled_card_shows_the_poems_the_bundled_model_draws_now() -> None:
    """A decoding rule that moves the default poems must rewrite the card too (`python
    scripts/bundle_model.py --card-only`), as the README's samples are checked: the card's went stale
    once, still showing 不知何处处 after the glued-doubling rule refused it."""
    from tangpoem_hf.modeling import load_model

    card = (BUNDLED_MODEL_DIR / "README.md").read_text(encoding="utf-8")
    samples = cards.sample_poems(load_model())
    for description, text in samples:
        block = "\n".join([f"**{description}**", "", *[f"> {row}  " for row in text.splitlines()]])
        assert block in card, f"{description}: the card shows other poems; rewrite it with --card-only"
    assert len(samples) == len(cards.SAMPLE_REQUESTS)


def test_card_samples_are_drawn_with_the_cli_defaults(tiny_model: TangPoemLSTM) -> None:
    """A 绝句 or 律诗 rhymes and keeps the relaxed tone rule, as `tangpoem generate` draws it."""
    model = tiny_model
    samples = dict(cards.sample_poems(model))
    for description, kwargs in cards.SAMPLE_REQUESTS:
        if f"{description} (seed 0)" in samples:
            expected = generate_poem(model, seed=0, rhyme=True, tone="relaxed", **kwargs).text
            assert samples[f"{description} (seed 0)"] == expected, description
    assert samples


# --- what the weights read -------------------------------------------------------------------------

SONG = {"dynasties": "tang,song", "tang_weight": 2}
WHOLE_TANG = {"data": {"kind": "chinese-poetry", "filters": {}}}
LI_BAI = {"data": {"kind": "chinese-poetry", "filters": {"author": ["李白"]}}}


def test_the_card_names_every_dynasty_the_weights_read(tiny_model: TangPoemLSTM) -> None:
    """A model pre-trained on the 全宋诗 says so, also after fine-tuning; a Tang-only one does not."""

    def data(training_config: dict | None, finetuned: dict | None = None) -> str:
        card = cards.build_model_card(
            tiny_model, None, datasets=[], training_config=training_config, finetuned=finetuned, samples=[]
        )
        return card.text.split("## Data and limitations\n\n")[1]

    tang = data({"dynasties": "tang"})
    assert tang.startswith("Trained on the Tang poems of [chinese-poetry]") and "Song" not in tang
    assert data(SONG).startswith("Trained on the Tang and Song poems (全唐诗 and 全宋诗) of [chinese-poetry]")
    assert "(Tang weighted ×2), cleaned" in data(SONG) and "never trained" in data(SONG)
    then_tang = data({"dynasties": "tang"}, {**WHOLE_TANG, "base_dynasties": "tang,song", "base_tang_weight": 2})
    assert then_tang.startswith("Trained on the Tang and Song poems (全唐诗 and 全宋诗) of [chinese-poetry]")
    assert "chinese-poetry) (Tang weighted ×2), then on the Tang poems alone, cleaned" in then_tang
    selection = data({"dynasties": "tang"}, {**LI_BAI, "base_dynasties": "tang,song"})
    assert selection.startswith("The base model was trained on the Tang and Song poems")
    assert data(None, LI_BAI).startswith("The base model was trained on the Tang poems of")  # an old record
