import json
import pickle

import pytest
import torch
from conftest import make_tiny_model

from tangpoem_hf import ModelFileError, TangPoemConfig, TangPoemLSTM


def test_forward_shapes_state_and_loss(tiny_model):
    x = torch.randint(4, len(tiny_model.tokenizer), (3, 7))
    out = tiny_model(x, labels=x)
    assert out.logits.shape == (3, 7, len(tiny_model.tokenizer))
    assert out.state[0].shape == (1, 3, tiny_model.config.hidden_size)
    assert out.loss is not None and out.loss.ndim == 0


def test_state_carries_over_steps(tiny_model):
    x = torch.randint(4, len(tiny_model.tokenizer), (2, 6))
    whole = tiny_model(x).logits
    first = tiny_model(x[:, :3])
    rest = tiny_model(x[:, 3:], state=first.state)
    assert torch.allclose(torch.cat([first.logits, rest.logits], 1), whole, atol=1e-6)


def test_loss_ignores_padding(tiny_model):
    x = torch.randint(4, len(tiny_model.tokenizer), (2, 6))
    labels = x.clone()
    labels[1, 3:] = 0  # pad
    logits = tiny_model(x).logits
    keep = labels != 0
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    assert torch.allclose(tiny_model(x, labels=labels).loss, expected)
    labels[1, 3:] = -100
    assert torch.allclose(tiny_model(x, labels=labels).loss, expected)


def test_save_and_load_round_trip(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["README.md", "config.json", "model.safetensors", "vocab.json"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "tangpoem-lstm" and config["vocab_size"] == len(tiny_model.tokenizer)
    loaded = TangPoemLSTM.from_pretrained(tmp_path / "m")
    assert loaded.tokenizer.tokens == tiny_model.tokenizer.tokens
    x = torch.randint(4, len(tiny_model.tokenizer), (2, 5))
    assert torch.equal(loaded(x).logits, tiny_model(x).logits)
    assert not loaded.training


def test_tied_weights_round_trip(tmp_path):
    model = make_tiny_model(embedding_dim=24, hidden_size=24, tie_weights=True)
    assert model.head.weight is model.embed.weight
    model.save_pretrained(tmp_path / "t")
    loaded = TangPoemLSTM.from_pretrained(tmp_path / "t")
    assert loaded.head.weight is loaded.embed.weight
    assert torch.equal(loaded.embed.weight, model.embed.weight)


def test_tie_needs_equal_sizes():
    with pytest.raises(ModelFileError, match="tie_weights"):
        TangPoemConfig(vocab_size=10, embedding_dim=8, hidden_size=16, tie_weights=True)


def test_missing_files_are_named(tmp_path, tiny_model_dir):
    (tiny_model_dir / "model.safetensors").unlink()
    with pytest.raises(ModelFileError, match="model.safetensors is missing"):
        TangPoemLSTM.from_pretrained(tiny_model_dir)


def test_pickled_weights_are_never_loaded(tmp_path, tiny_model_dir, monkeypatch):
    (tiny_model_dir / "model.safetensors").unlink()

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle was executed')",))

    (tiny_model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(Boom()))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    with pytest.raises(ModelFileError, match="never loads pickled"):
        TangPoemLSTM.from_pretrained(tiny_model_dir)


def test_config_weight_mismatch_is_named(tiny_model_dir):
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    cfg["hidden_size"] = 32
    (tiny_model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="model.safetensors"):
        TangPoemLSTM.from_pretrained(tiny_model_dir)


def test_vocab_size_mismatch_is_named(tiny_model_dir):
    vocab = json.loads((tiny_model_dir / "vocab.json").read_text())
    vocab["tokens"].append("龘")
    (tiny_model_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    with pytest.raises(ModelFileError, match="vocab.json has"):
        TangPoemLSTM.from_pretrained(tiny_model_dir)


def test_truncated_weights_are_named(tiny_model_dir):
    path = tiny_model_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="model.safetensors"):
        TangPoemLSTM.from_pretrained(tiny_model_dir)


def test_broken_config_is_named(tiny_model_dir):
    (tiny_model_dir / "config.json").write_text("{oops")
    with pytest.raises(ModelFileError, match="config.json"):
        TangPoemLSTM.from_pretrained(tiny_model_dir)


def test_unknown_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        TangPoemLSTM.from_pretrained(str(tmp_path / "no" / "such"))


def test_unreachable_hub_id_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="user/no-such-model"):
        TangPoemLSTM.from_pretrained("user/no-such-model", cache_dir=tmp_path)


def test_bundled_model_loads_without_arguments():
    model = TangPoemLSTM.from_pretrained()
    assert model.tokenizer is not None and len(model.tokenizer) == model.config.vocab_size


@pytest.mark.parametrize("layers", [1, 2])
def test_decoding_fast_path_matches_the_sequence_kernel(layers):
    model = make_tiny_model(num_layers=layers, hidden_size=24)
    x = torch.randint(4, len(model.tokenizer), (3, 5))
    start = model(x[:, :2]).state
    with torch.inference_mode():  # takes the per-token lstm_cell path
        fast = model(x[:, 2:], state=start)
    slow = model(x[:, 2:], state=start)  # gradients enabled: nn.LSTM
    assert torch.allclose(fast.logits, slow.logits, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fast.state, slow.state))


def test_decoding_fast_path_follows_changed_weights():
    """The fast path's transposed weight copies are remade when a weight changes in place (a training step)."""
    model = make_tiny_model(num_layers=2, hidden_size=24)
    x = torch.randint(4, len(model.tokenizer), (3, 2))
    with torch.inference_mode():
        model(x)  # builds the copies
    with torch.no_grad():
        model.lstm.weight_hh_l1.mul_(0.5)
        model.head.weight.add_(0.1)
    with torch.inference_mode():
        fast = model(x)
    slow = model(x)
    assert torch.allclose(fast.logits, slow.logits, atol=1e-5)
