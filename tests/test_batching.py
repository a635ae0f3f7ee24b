import numpy as np
import torch

from tangpoem_hf.batching import PaddedBatches, StreamBatches, encode_poems, prepare_text
from tangpoem_hf.tokenizer import CharTokenizer

TEXTS = [
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "春眠不觉晓，处处闻啼鸟。",
    "床前明月光，疑是地上霜。",
] * 10


def test_modes_prepare_text():
    assert prepare_text(TEXTS[0], "report") == "白日依山尽黄河入海流欲穷千里目更上一层楼"
    assert prepare_text("山" * 150, "report") == "山" * 100
    assert prepare_text(TEXTS[0], "ours") == TEXTS[0]


def test_ours_frames_poems_with_bos_eos():
    tok = CharTokenizer.build(TEXTS)
    poems = encode_poems(TEXTS, tok, "ours")
    assert poems[0][0] == tok.bos_id and poems[0][-1] == tok.eos_id
    assert tok.decode(poems[0]) == TEXTS[0]


def test_stream_batches_are_packed_shifted_and_deterministic():
    tok = CharTokenizer.build(TEXTS)
    poems = encode_poems(TEXTS, tok, "ours")
    b = StreamBatches(poems, batch_size=4, seq_len=8, seed=1)
    x, y = b.get(0, 0)
    assert x.shape == y.shape == (4, 8)
    assert (x != tok.pad_id).all()  # no padding at all
    x1, _ = b.get(0, 1)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x1[:, 0])
    again = StreamBatches(poems, batch_size=4, seq_len=8, seed=1)
    assert torch.equal(again.get(0, 2)[0], b.get(0, 2)[0])
    assert not torch.equal(b.get(1, 0)[0], b.get(0, 0)[0])  # reshuffled each epoch


def test_stream_shards_are_the_rows_of_the_global_batch():
    tok = CharTokenizer.build(TEXTS)
    poems = encode_poems(TEXTS, tok, "ours")
    whole = StreamBatches(poems, batch_size=4, seq_len=8, seed=3)
    parts = [StreamBatches(poems, batch_size=2, seq_len=8, seed=3, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([p.get(0, 1)[0] for p in parts]), whole.get(0, 1)[0])


def test_report_batches_pad_to_100():
    tok = CharTokenizer.build([prepare_text(t, "report") for t in TEXTS])
    poems = encode_poems(TEXTS, tok, "report")
    b = PaddedBatches(poems, batch_size=8, pad_id=tok.pad_id, seed=0)
    x, y = b.get(0, 0)
    assert x.shape == (8, 99)
    assert (y == tok.pad_id).any()
    lengths = sorted({int((row != tok.pad_id).sum()) for row in np.asarray(b.matrix)})
    assert lengths == [10, 20]
