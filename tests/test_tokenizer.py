import json

import pytest

from tangpoem_hf.errors import InputError, ModelFileError
from tangpoem_hf.tokenizer import SPECIALS, CharTokenizer


def test_specials_first_and_frequency_order():
    tok = CharTokenizer.build(["山山山水水月"])
    assert tok.tokens[:4] == list(SPECIALS)
    assert tok.tokens[4:] == ["山", "水", "月"]
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)


def test_ids_never_change_after_save_and_load(tmp_path):
    tok = CharTokenizer.build(["白日依山尽，黄河入海流。"])
    tok.save(tmp_path)
    again = CharTokenizer.load(tmp_path)
    assert again.tokens == tok.tokens
    # Building from a different corpus gives other ids; loading the saved file never does.
    other = CharTokenizer.build(["黄河黄河白日"])
    assert other.tokens != tok.tokens
    assert CharTokenizer.load(tmp_path / "vocab.json").tokens == tok.tokens


def test_min_freq():
    tok = CharTokenizer.build(["山山水"], min_freq=2)
    assert "山" in tok and "水" not in tok


def test_encode_decode_and_unknown():
    tok = CharTokenizer.build(["白日依山尽"])
    ids = tok.encode("白日龘", add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and ids[3] == tok.unk_id
    assert tok.decode(tok.encode("白日依山")) == "白日依山"


def test_traditional_input_is_converted():
    tok = CharTokenizer.build(["黄河入海流"])
    assert tok.encode("黃河") == tok.encode("黄河")
    assert tok.ids_of("黃") == [tok.index["黄"]]


def test_unknown_characters_named():
    tok = CharTokenizer.build(["黄河入海流"])
    with pytest.raises(InputError, match="龘"):
        tok.ids_of("河龘")


def test_broken_vocab_files(tmp_path):
    (tmp_path / "vocab.json").write_text("{", encoding="utf-8")
    with pytest.raises(ModelFileError, match="vocab.json"):
        CharTokenizer.load(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"tokens": ["a", "b"]}), encoding="utf-8")
    with pytest.raises(ModelFileError, match="special"):
        CharTokenizer.load(tmp_path)
    with pytest.raises(ModelFileError, match="missing"):
        CharTokenizer.load(tmp_path / "nope" / "vocab.json")
