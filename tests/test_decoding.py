import pytest
import torch

from tangpoem_hf import InputError
from tangpoem_hf.decoding import generate_poem, generate_poems, stream_poem
from tangpoem_hf.request import PoemRequest
from tangpoem_hf.text import is_han


def well_formed(poem, form, lines):
    assert len(poem.lines) == lines
    assert all(len(line) == form and all(is_han(c) for c in line) for line in poem.lines)
    flat = poem.text.replace("\n", "")
    expected = "".join(line + ("，" if i % 2 == 0 and i + 1 < lines else "。") for i, line in enumerate(poem.lines))
    assert flat == expected


@pytest.mark.parametrize(("form", "lines"), [(5, 4), (7, 4), (5, 8), (7, 2), (5, 3), (7, 16)])
def test_shape_is_guaranteed(tiny_model, form, lines):
    poem = generate_poem(tiny_model, first="山", form=form, lines=lines, seed=1)
    well_formed(poem, form, lines)
    assert poem.lines[0][0] == "山"


def test_several_first_characters_and_traditional_input(tiny_model):
    poem = generate_poem(tiny_model, first="黃河", form=5, seed=3)
    assert poem.lines[0].startswith("黄河")


def test_acrostic_gives_one_line_per_head(tiny_model):
    poem = generate_poem(tiny_model, acrostic="春夜山月", form=5, seed=2)
    well_formed(poem, 5, 4)
    assert [line[0] for line in poem.lines] == list("春夜山月")
    six = generate_poem(tiny_model, acrostic="春夜山月花鸟", form=7, seed=2)
    assert len(six.lines) == 6


def test_more_heads_than_lines_is_an_error(tiny_model):
    with pytest.raises(InputError, match="heads"):
        generate_poem(tiny_model, acrostic="春夜山月", lines=2)


def test_same_seed_same_poem_and_batch_matches_single(tiny_model):
    a = generate_poem(tiny_model, first="月", seed=7, temperature=1.2)
    b = generate_poem(tiny_model, first="月", seed=7, temperature=1.2)
    assert a.text == b.text
    batch = generate_poems(tiny_model, 5, first="月", seed=5, temperature=1.2)
    assert batch[2].text == a.text
    assert [p.seed for p in batch] == [5, 6, 7, 8, 9]
    assert len({p.text for p in batch}) > 1


def test_streaming_yields_growing_prefixes(tiny_model):
    ask = {"first": "山", "form": 5, "lines": 4, "seed": 1, "search": "poem"}  # a line search may replace a line
    steps = list(stream_poem(tiny_model, **ask))
    assert len(steps) == 20
    flat = [s.text.replace("\n", "") for s in steps]
    assert all(flat[i + 1].startswith(flat[i].rstrip("，。")) for i in range(len(flat) - 1))
    assert steps[-1].finished and not steps[0].finished
    assert steps[-1].text == generate_poem(tiny_model, **ask).text


def wants_to_stop(model):
    """The model puts all its probability on <eos>, then on the other specials, after every input."""
    tok = model.tokenizer
    with torch.no_grad():
        model.head.bias.fill_(-1e4)
        model.head.bias[[tok.pad_id, tok.bos_id, tok.unk_id]] = 1e3
        model.head.bias[tok.eos_id] = 1e4
    return model


def test_never_loops_or_stops_even_if_the_model_wants_to_stop(tiny_model):
    """A model that only ever predicts <eos> still yields a full poem of Han characters."""
    poem = generate_poem(wants_to_stop(tiny_model), first="山", form=7, lines=8, seed=0)
    well_formed(poem, 7, 8)


def test_top_k_one_is_greedy(tiny_model):
    a = generate_poem(tiny_model, first="山", seed=1, top_k=1)
    b = generate_poem(tiny_model, first="山", seed=99, top_k=1)
    assert a.text == b.text


def test_traditional_output(tiny_model):
    poem = generate_poem(tiny_model, first="黄", seed=1)
    assert poem.traditional().lines[0][0] == "黃"


def test_a_request_accepts_chinese_form_names(tiny_model):
    assert PoemRequest.build(tiny_model.tokenizer, form="五言").spec.form == 5
    assert [len(line) for line in generate_poem(tiny_model, form="七言", seed=0).lines] == [7] * 4


def test_partial_sort_nucleus_equals_the_full_sort():
    """Top-p draws through topk give exactly the draws of the textbook full sort, small and wide nuclei alike."""
    from tangpoem_hf.decoding import _sample_rows

    def _sample(logits, temperature, top_k, top_p, gen):
        return int(_sample_rows(logits.unsqueeze(0), temperature, top_k, top_p, [gen])[0])

    def full_sort_sample(logits, temperature, top_p, gen):
        probs = torch.softmax(logits.double() / temperature, dim=-1)
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, 0) - sorted_p < top_p
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_p[keep])
        cdf = torch.cumsum(probs, 0)
        u = torch.rand((), generator=gen, dtype=torch.float64) * cdf[-1]
        return int(torch.searchsorted(cdf, u.unsqueeze(0)).clamp(max=len(cdf) - 1))

    torch.manual_seed(0)
    for trial in range(60):
        scale = [0.3, 1.0, 3.0][trial % 3]  # flat (nucleus beyond 1,024 and 4,096) to peaked
        logits = torch.randn(7133) * scale
        for top_p in (0.5, 0.9, 0.99):
            a = _sample(logits, 0.8, 0, top_p, torch.Generator().manual_seed(trial))
            b = full_sort_sample(logits, 0.8, top_p, torch.Generator().manual_seed(trial))
            assert a == b


def test_batched_draws_equal_single_draws():
    """Rows drawn together (candidates, a batch) give exactly the draws each row gets alone."""
    from tangpoem_hf.decoding import _sample_rows

    torch.manual_seed(1)
    for trial in range(30):
        logits = torch.randn(6, 7133) * [0.3, 1.0, 3.0][trial % 3]
        logits[:, :50] = -float("inf")  # masked characters
        for top_k, top_p in ((0, 0.9), (20, 1.0), (0, 0.995), (40, 0.5)):
            together = _sample_rows(
                logits, 0.8, top_k, top_p, [torch.Generator().manual_seed(trial + b) for b in range(6)]
            )
            alone = [
                int(_sample_rows(logits[b : b + 1], 0.8, top_k, top_p, [torch.Generator().manual_seed(trial + b)])[0])
                for b in range(6)
            ]
            assert together.tolist() == alone


def test_quick_nucleus_draws_as_the_wide_guess_on_tied_probabilities():
    """The quick partial sort leaves a tie across the nucleus' edge to the wider guess, so tied
    characters (equal logits) are drawn exactly as the 1,024-wide sort draws them."""
    from tangpoem_hf.decoding import NUCLEUS_GUESSES, _sample_rows

    def wide_guess_sample(logits, temperature, top_p, gen):
        probs = torch.softmax(logits.double() / temperature, dim=-1)
        sorted_p, order = torch.topk(probs, NUCLEUS_GUESSES[0])
        assert float(sorted_p.sum()) >= top_p  # the nucleus fits in the first guess
        keep = torch.cumsum(sorted_p, 0) - sorted_p < top_p
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_p * keep)
        cdf = torch.cumsum(probs, 0)
        u = torch.rand((), generator=gen, dtype=torch.float64) * cdf[-1]
        return int(torch.searchsorted(cdf, u.unsqueeze(0)).clamp(max=len(cdf) - 1))

    torch.manual_seed(2)
    for trial in range(40):
        logits = (torch.randn(7133) * 12).round() / 4  # coarse: many exact ties among the likeliest
        for top_p in (0.5, 0.9):
            gens = [torch.Generator().manual_seed(100 * trial + s) for s in range(8)]
            drawn = _sample_rows(logits.expand(8, -1), 0.5, 0, top_p, gens).tolist()
            gens = [torch.Generator().manual_seed(100 * trial + s) for s in range(8)]
            assert drawn == [wide_guess_sample(logits, 0.5, top_p, g) for g in gens]
