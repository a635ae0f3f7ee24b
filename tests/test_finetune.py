"""Fine-tuning: vocabulary growth keeps old ids and logits, data filters, early stop, resume, card."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from conftest import make_tiny_model, poem_records, write_corpus

from tangpoem_hf import TangPoemLSTM
from tangpoem_hf.cli import main
from tangpoem_hf.corpus import SPLIT_VERSION
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.errors import InputError
from tangpoem_hf.finetune import FinetuneOptions, finetune, grow_vocabulary
from tangpoem_hf.finetune_data import build_finetune_data, filter_splits, hash_validation, text_file_splits
from tangpoem_hf.modeling import BUNDLED_MODEL_DIR
from tangpoem_hf.text import punctuate
from tangpoem_hf.train_config import TrainConfig

# Poems the tiny model's vocabulary (built from conftest.POEMS) mostly lacks: 锄, 禾, 汗, 粒, 辛, 苦...
# One traditional and unpunctuated, to exercise cleaning.
MY_POEMS = [
    "锄禾日当午，汗滴禾下土。谁知盘中餐，粒粒皆辛苦。",
    "鋤禾日當午汗滴禾下土誰知盤中餐粒粒皆辛苦",
    "离离原上草，一岁一枯荣。野火烧不尽，春风吹又生。",
    "春种一粒粟，秋收万颗子。四海无闲田，农夫犹饿死。",
    "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "红豆生南国，春来发几枝。愿君多采撷，此物最相思。",
    "松下问童子，言师采药去。只在此山中，云深不知处。",
]
RARE = "㐀㐁㐂㐃㐄㐅"  # CJK Extension A: absent from any Tang vocabulary
HAS_BUNDLED = (BUNDLED_MODEL_DIR / "model.safetensors").is_file()


@pytest.fixture
def poems_file(tmp_path: Path) -> Path:
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(MY_POEMS) + "\n\n", encoding="utf-8")
    return path


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "base"
    make_tiny_model().save_pretrained(folder)
    return folder


def small_cfg(out: Path, corpus: Path | str, **kw: Any) -> TrainConfig:
    base = dict(corpus=str(corpus), out_dir=str(out), batch_size=2, seq_len=16, epochs=2, progress=False, lr=0.01)
    base.update(kw)
    return TrainConfig(**base)


def old_logits_match(grown: TangPoemLSTM, base: TangPoemLSTM, text: str) -> None:
    """The grown model's logits for the old ids equal the base's, on the same text."""
    ids_grown = torch.tensor([grown.tokenizer.encode(text, add_bos=True)])
    ids_base = torch.tensor([base.tokenizer.encode(text, add_bos=True)])
    n_old = len(base.tokenizer)
    with torch.no_grad():
        new, old = grown(ids_grown).logits, base(ids_base).logits
    torch.testing.assert_close(new[..., :n_old], old, rtol=0, atol=1e-6)
    # The new characters share <unk>'s probability, so old probabilities shrink by 1 / (1 + p_unk).
    p_unk = old.softmax(-1)[..., base.tokenizer.unk_id]
    shift = new.log_softmax(-1)[..., :n_old] - old.log_softmax(-1)
    torch.testing.assert_close(shift, -torch.log1p(p_unk)[..., None].expand_as(shift), rtol=0, atol=1e-5)


# --- vocabulary growth -----------------------------------------------------------------------------


@pytest.mark.parametrize("tie", [False, True])
def test_growth_keeps_old_ids_and_logits(tie: bool) -> None:
    base = make_tiny_model(**({"embedding_dim": 24, "tie_weights": True} if tie else {}))
    new = ["锄", "禾", "汗"]
    grown = grow_vocabulary(base, new)
    assert grown.tokenizer.tokens == base.tokenizer.tokens + new
    assert grown.config.vocab_size == len(grown.tokenizer) == len(base.tokenizer) + 3
    assert grown.config.tie_weights == tie and (grown.head.weight is grown.embed.weight) == tie
    old_logits_match(grown, base, "白日依山尽，黄河入海流。")
    # Text with new characters: the base saw <unk> there, whose embedding the new rows copy.
    old_logits_match(grown, base, "锄禾日当午，汗滴禾下土。")


@pytest.mark.skipif(not HAS_BUNDLED, reason="the bundled model is not trained yet")
def test_growth_of_the_bundled_model_keeps_its_logits() -> None:
    base = TangPoemLSTM.from_pretrained()
    new = [ch for ch in RARE if ch not in base.tokenizer][:2]
    grown = grow_vocabulary(base, new)
    old_logits_match(grown, base, "床前明月光，疑是地上霜。" + "".join(new))


def test_finetune_grows_vocabulary_saves_and_generates(base_dir: Path, poems_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = finetune(small_cfg(out, poems_file, max_steps=4), FinetuneOptions(init_from=str(base_dir)))
    base = TangPoemLSTM.from_pretrained(base_dir)
    model = TangPoemLSTM.from_pretrained(out / "best")
    old = base.tokenizer.tokens
    assert len(model.tokenizer) > len(old) and model.tokenizer.tokens[: len(old)] == old
    train_chars = set("".join(text_file_splits(poems_file).splits["train"]["text"]))
    added = model.tokenizer.tokens[len(old) :]
    assert set(added) == train_chars - set(old) and len(added) > 10
    assert json.loads((out / "best" / "config.json").read_text())["vocab_size"] == len(model.tokenizer)
    assert json.loads((out / "vocab.json").read_text())["tokens"] == model.tokenizer.tokens
    assert summary["new_characters"] == len(model.tokenizer) - len(old) and summary["steps"] == 4
    poem = generate_poem(model, first=added[0], form=5, lines=4, seed=0)
    assert len(poem.lines) == 4 and all(len(line) == 5 for line in poem.lines)
    info = json.loads((out / "best" / "training.json").read_text())["train_config"]["extra"]["finetune"]
    assert info["data"]["kind"] == "text-file" and info["data"]["poems"]["train"] >= 1
    assert math.isfinite(info["base_val_perplexity"])
    for name in ("train_log.jsonl", "curves.png", "best/README.md"):
        assert (out / name).exists(), name


def test_finetune_prepares_data_then_model_then_trainer_once_each(
    base_dir: Path, poems_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pass: the corpus is read, the vocabulary grown and the trainer prepared once each, in that order."""
    from tangpoem_hf import finetune as module
    from tangpoem_hf import finetune_data, training

    calls: list[str] = []

    def recorded(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(finetune_data, "text_file_splits", recorded("data", finetune_data.text_file_splits))
    monkeypatch.setattr(module, "grow_vocabulary", recorded("model", module.grow_vocabulary))
    monkeypatch.setattr(training.Trainer, "prepare", recorded("trainer", training.Trainer.prepare))
    finetune(small_cfg(tmp_path / "run", poems_file, max_steps=2), FinetuneOptions(init_from=str(base_dir)))
    assert calls == ["data", "model", "trainer"]


@pytest.mark.skipif(not HAS_BUNDLED, reason="the bundled model is not trained yet")
def test_finetune_the_bundled_model(poems_file: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.txt"
    extra.write_text("\n".join([*MY_POEMS, "㐀㐁山中月，江边水上舟。"]), encoding="utf-8")  # lands in train
    out = tmp_path / "bundled-ft"
    finetune(small_cfg(out, extra, max_steps=2), FinetuneOptions())
    base = TangPoemLSTM.from_pretrained()
    model = TangPoemLSTM.from_pretrained(out / "best")
    old = base.tokenizer.tokens
    assert model.tokenizer.tokens[: len(old)] == old
    assert {"㐀", "㐁"} - set(old) <= set(model.tokenizer.tokens[len(old) :])
    old_logits_match(grow_vocabulary(base, model.tokenizer.tokens[len(old) :]), base, "山中㐀月")
    assert len(generate_poem(model, first="山", form=7, lines=4, seed=1).lines) == 4


def test_new_chars_unk_keeps_the_vocabulary(base_dir: Path, poems_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "unk"
    finetune(small_cfg(out, poems_file, max_steps=2), FinetuneOptions(init_from=str(base_dir), new_chars="unk"))
    base = TangPoemLSTM.from_pretrained(base_dir)
    model = TangPoemLSTM.from_pretrained(out / "best")
    assert model.tokenizer.tokens == base.tokenizer.tokens and model.config.vocab_size == base.config.vocab_size
    info = json.loads((out / "best" / "training.json").read_text())["train_config"]["extra"]["finetune"]
    assert "采" in info["unk_characters"] and info["new_characters"] == ""


def test_freeze_embedding_keeps_old_rows_and_trains_new_ones(base_dir: Path, poems_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "frozen"
    cfg = small_cfg(out, poems_file, max_steps=4, freeze_embedding=True)
    finetune(cfg, FinetuneOptions(init_from=str(base_dir)))
    base = TangPoemLSTM.from_pretrained(base_dir)
    model = TangPoemLSTM.from_pretrained(out / "best")
    n_old = len(base.tokenizer)
    assert torch.equal(model.embed.weight[:n_old], base.embed.weight)
    start = base.embed.weight[base.tokenizer.unk_id]
    assert not torch.allclose(model.embed.weight[model.tokenizer.index["采"]], start)
    assert not torch.equal(model.head.weight[:n_old], base.head.weight)


# --- data --------------------------------------------------------------------------------------------


def test_text_file_cleaning_and_validation(poems_file: Path) -> None:
    data = text_file_splits(poems_file, val_percent=30)
    train, val = list(data.splits["train"]["text"]), list(data.splits["validation"]["text"])
    assert train and val and not set(train) & set(val) and len(data.splits["test"]) == 0
    everything = train + val
    # The traditional, unpunctuated line is cleaned into the punctuated simplified one (so they hash together).
    assert everything.count("锄禾日当午，汗滴禾下土。谁知盘中餐，粒粒皆辛苦。") == 2
    assert text_file_splits(poems_file, val_percent=30).splits["validation"]["text"] == val  # deterministic


def test_tiny_text_files_still_validate(tmp_path: Path) -> None:
    one = tmp_path / "one.txt"
    one.write_text(MY_POEMS[0] + "\n" + MY_POEMS[0], encoding="utf-8")
    data = text_file_splits(one)
    assert len(data.splits["train"]) == 2 and len(data.splits["validation"]) == 2
    assert "both the training and the validation" in data.notes[0]
    two = tmp_path / "two.txt"
    two.write_text("\n".join(MY_POEMS[2:4]), encoding="utf-8")
    data = text_file_splits(two, val_percent=1)
    assert len(data.splits["train"]) == 1 and len(data.splits["validation"]) == 1
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\nabc\n", encoding="utf-8")
    with pytest.raises(InputError, match="no poems"):
        text_file_splits(empty)


def test_hash_validation_keeps_duplicates_together(tmp_path: Path) -> None:
    from datasets import Dataset

    texts = [f"{i}" * 5 for i in "山水月花风雨雪云天地江河湖海松竹梅兰"] * 3
    train, val, _ = hash_validation(Dataset.from_dict({"text": texts}), 20)
    assert not set(train["text"]) & set(val["text"]) and len(train) + len(val) == len(texts)


def test_punctuate() -> None:
    assert punctuate("床前明月光疑是地上霜举头望明月低头思故乡") == "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    assert punctuate("朝辞白帝彩云间千里江陵一日还") == "朝辞白帝彩云间，千里江陵一日还。"
    assert punctuate("白日依山尽，黄河入海流。") == "白日依山尽，黄河入海流。"
    assert punctuate("一二三四五六七八九") == "一二三四五六七八九"


def tagged_corpus(folder: Path) -> Path:
    records = poem_records()
    for rec in records:
        rec["tags"] = ["边塞"] if rec["title"] in ("出塞", "涼州詞") else ["写景"] if rec["author"] == "杜牧" else []
    return write_corpus(folder, records)


def test_filters_select_the_right_poems(tmp_path: Path) -> None:
    corpus = tagged_corpus(tmp_path / "tagged")
    by_li = build_finetune_data(str(corpus), authors=["李白"])
    for split in ("train", "validation", "test"):
        assert set(by_li.splits[split]["author"]) == {"李白"}
    assert len(by_li.splits["train"]) == 8 and len(by_li.splits["validation"]) == 4  # 2 poems × 4 copies
    trad = build_finetune_data(str(corpus), authors=["王之渙"])  # either script matches
    simp = build_finetune_data(str(corpus), authors=["王之涣"])
    assert len(trad.splits["train"]) == len(simp.splits["train"]) == 4
    quatrains = build_finetune_data(str(corpus), forms=["七絕"])
    assert set(quatrains.splits["train"]["form"]) == {"七绝"} and len(quatrains.splits["train"]) == 6 * 4
    frontier = build_finetune_data(str(corpus), tags=["边塞"])
    # Both are training poems of the corpus, so fine-tuning holds some of them out itself.
    assert set(frontier.splits["train"]["title"]) | set(frontier.splits["validation"]["title"]) == {"出塞", "涼州詞"}
    both = filter_splits(quatrains.splits, authors=["李白"], tags=["边塞"])
    assert len(both["train"]) == 0
    with pytest.raises(InputError, match="No training poems"):
        build_finetune_data(str(corpus), authors=["无名氏"])
    with pytest.raises(InputError, match="--form"):
        build_finetune_data(str(corpus), forms=["七言"])
    text_file = tmp_path / "mine.txt"
    text_file.write_text(MY_POEMS[0], encoding="utf-8")
    with pytest.raises(InputError, match="text file"):
        build_finetune_data(str(text_file), authors=["李白"])


def test_replay_mixes_in_other_poems(tmp_path: Path) -> None:
    corpus = tagged_corpus(tmp_path / "tagged")
    data = build_finetune_data(str(corpus), authors=["李白"], replay=1.0)
    authors = data.splits["train"]["author"]
    assert authors.count("李白") == 8 and len(authors) == 16
    assert set(data.splits["validation"]["author"]) == {"李白"}
    again = build_finetune_data(str(corpus), authors=["李白"], replay=1.0)
    assert again.splits["train"]["id"] == data.splits["train"]["id"]  # deterministic
    with pytest.raises(InputError, match="filter"):
        build_finetune_data(str(corpus), replay=1.0)


def test_dataset_folder_with_cleaned_text(small_corpus: Path, tmp_path: Path) -> None:
    from tangpoem_hf.corpus import build_splits
    from tangpoem_hf.hub import stage_dataset_folder

    folder = stage_dataset_folder(build_splits(str(small_corpus))[0], tmp_path / "ds")
    data = build_finetune_data(str(folder), forms=["五绝"])
    assert data.kind == "dataset" and set(data.splits["train"]["form"]) == {"五绝"} and len(data.splits["validation"])


def test_dataset_folder_with_raw_paragraphs(tmp_path: Path) -> None:
    records = poem_records()
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "poems.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    data = build_finetune_data(str(folder), authors=["杜甫"])
    reference = build_finetune_data(str(write_corpus(tmp_path / "cp", records)), authors=["杜甫"])
    for split in ("train", "validation", "test"):
        assert sorted(data.splits[split]["text"]) == sorted(reference.splits[split]["text"])
    assert len(data.splits["train"]) == 4


# --- the run -----------------------------------------------------------------------------------------


def test_early_stopping_stops(base_dir: Path, poems_file: Path, tmp_path: Path) -> None:
    # lr 0: validation perplexity never improves after the first evaluation.
    cfg = small_cfg(tmp_path / "es", poems_file, lr=0.0, epochs=50, eval_every=1, patience=2)
    summary = finetune(cfg, FinetuneOptions(init_from=str(base_dir)))
    assert summary["stopped_early"] and summary["steps"] == 3
    # Resuming a run that stopped early stops again at once.
    again = finetune(cfg, FinetuneOptions(init_from=str(base_dir)), resume=True)
    assert again["stopped_early"] and again["steps"] == 3


def test_resume_is_bit_exact(base_dir: Path, poems_file: Path, tmp_path: Path) -> None:
    opts = FinetuneOptions(init_from=str(base_dir))
    full = finetune(small_cfg(tmp_path / "full", poems_file, max_steps=6, checkpoint_every=100), opts)
    finetune(small_cfg(tmp_path / "part", poems_file, max_steps=3, checkpoint_every=3), opts)
    resumed = finetune(small_cfg(tmp_path / "part", poems_file, max_steps=6, checkpoint_every=100), opts, resume=True)
    assert full["steps"] == resumed["steps"] == 6
    a = TangPoemLSTM.from_pretrained(tmp_path / "full" / "best").state_dict()
    b = TangPoemLSTM.from_pretrained(tmp_path / "part" / "best").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match="--resume"):
        finetune(small_cfg(tmp_path / "part", poems_file, max_steps=6), opts)


class RecordingApi:
    """Stands in for HfApi: records the pushed folder's card instead of uploading."""

    def __init__(self) -> None:
        self.cards: list[str] = []

    def create_repo(self, repo_id: str, **_: Any) -> str:
        return repo_id

    def upload_folder(self, *, repo_id: str, folder_path: str, **_: Any) -> SimpleNamespace:
        self.cards.append((Path(folder_path) / "README.md").read_text(encoding="utf-8"))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")


def card_yaml(card: str) -> dict:
    return yaml.safe_load(card.split("---")[1])


def test_card_records_base_model_and_data(base_dir: Path, poems_file: Path, tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.hub_mixin

    import tangpoem_hf.modeling as modeling

    # A Hub id as the base: each file "download" comes from the local folder.
    def fake_download(repo_id: str, filename: str, **_: Any) -> str:
        assert repo_id == "alice/tangpoem"
        return str(base_dir / filename)

    monkeypatch.setattr(modeling, "hf_hub_download", fake_download)
    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", fake_download)
    api = RecordingApi()
    opts = FinetuneOptions(init_from="alice/tangpoem", push_to_hub="alice/tangpoem-mine")
    finetune(small_cfg(tmp_path / "hub", poems_file, max_steps=2), opts, api=api)
    (card,) = api.cards
    meta = card_yaml(card)
    assert meta["base_model"] == "alice/tangpoem" and meta["model_name"] == "tangpoem-mine"
    assert "text-file" in card and "mine.txt" in card  # the fine-tuning data, in the training section
    assert card_yaml((tmp_path / "hub" / "best" / "README.md").read_text())["base_model"] == "alice/tangpoem"


def test_cli_finetune_and_train_init_from(base_dir: Path, poems_file: Path, tmp_path: Path, capsys) -> None:
    common = ["--corpus", str(poems_file), "--max-steps", "2", "--batch-size", "2", "--seq-len", "16", "--no-progress"]
    code = main(["finetune", "--init-from", str(base_dir), "--out-dir", str(tmp_path / "a"), *common])
    assert code == 0 and (tmp_path / "a" / "best" / "model.safetensors").exists()
    code = main(["train", "--init-from", str(base_dir), "--out-dir", str(tmp_path / "b"), *common])
    assert code == 0
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["lr"] == 5e-4
    code = main(["finetune", "--init-from", str(base_dir), "--out-dir", str(tmp_path / "c"), "--author", "李", *common])
    assert code == 2 and "text file" in capsys.readouterr().err
    code = main(["train", "--author", "李白", "--out-dir", str(tmp_path / "d"), *common])
    assert code == 2 and "--init-from" in capsys.readouterr().err
    code = main(["finetune", "--push-to-hub", "a/b", "--push-every-epoch", "--out-dir", str(tmp_path / "e"), *common])
    assert code == 2 and "--push-every-epoch" in capsys.readouterr().err


def test_local_base_needs_an_id_for_base_model(base_dir: Path, poems_file: Path, tmp_path: Path) -> None:
    api = RecordingApi()
    named = FinetuneOptions(init_from=str(base_dir), base_model_id="alice/base", push_to_hub="alice/mine")
    finetune(small_cfg(tmp_path / "named", poems_file, max_steps=1), named, api=api)
    assert card_yaml(api.cards[-1])["base_model"] == "alice/base"
    with pytest.warns(UserWarning, match="--base-model-id"):
        finetune(
            small_cfg(tmp_path / "anon", poems_file, max_steps=1),
            FinetuneOptions(init_from=str(base_dir), push_to_hub="alice/mine"),
            api=api,
        )
    # The training section names the local base, by its folder's name: never this machine's absolute path.
    card = api.cards[-1]
    assert "base_model" not in card_yaml(card) and "Fine-tuned from `base` on " in card and str(base_dir) not in card


def test_freezing_a_tied_embedding_is_refused(poems_file: Path, tmp_path: Path) -> None:
    make_tiny_model(embedding_dim=24, tie_weights=True).save_pretrained(tmp_path / "tied")
    cfg = small_cfg(tmp_path / "t", poems_file, max_steps=1, freeze_embedding=True)
    with pytest.raises(InputError, match="ties"):
        finetune(cfg, FinetuneOptions(init_from=str(tmp_path / "tied")))


def test_a_tiny_collection_still_trains(base_dir: Path, tmp_path: Path, capsys) -> None:
    tiny = tmp_path / "two.txt"
    tiny.write_text("\n".join(MY_POEMS[2:4]), encoding="utf-8")
    out = tmp_path / "tiny-run"
    args = ["--init-from", str(base_dir), "--corpus", str(tiny), "--out-dir", str(out), "--max-steps", "2"]
    code = main(["finetune", *args, "--no-progress"])
    assert code == 0 and "batches shrink from 32 × 64" in capsys.readouterr().out
    assert len(generate_poem(TangPoemLSTM.from_pretrained(out / "best"), form=5, seed=0).lines) == 4


def test_cli_finetune_resume_uses_the_saved_run(base_dir: Path, poems_file: Path, tmp_path: Path, capsys) -> None:
    """`finetune --out-dir X --resume` continues with the saved base, data and settings; changes are refused."""
    out = tmp_path / "ft"
    common = ["--corpus", str(poems_file), "--batch-size", "2", "--seq-len", "16", "--no-progress"]
    first = ["finetune", "--init-from", str(base_dir), "--out-dir", str(out), *common, "--max-steps", "30"]
    assert main([*first, "--epochs", "1", "--lr-schedule", "cosine"]) == 0
    stopped = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert stopped.endswith("the end of epoch 1 (--epochs 1).")  # not a silent stop short of 30 steps
    assert main(["finetune", "--out-dir", str(out), "--resume", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Resumed from step" in printed and printed.rstrip().splitlines()[-1].endswith("(--epochs 1).")
    assert json.loads((out / "train_config.json").read_text())["lr_schedule"] == "cosine"
    assert main(["finetune", "--out-dir", str(out), "--resume", "--init-from", "bundled"]) == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and "--out-dir" in err and err.count("\n") == 1
    assert main(["finetune", "--out-dir", str(out), "--resume", "--hidden-size", "64"]) == 2
    assert "--hidden-size" in capsys.readouterr().err
    assert main(["train", "--out-dir", str(out), "--resume"]) == 0  # the same run, whichever command resumes it


def test_finetune_max_steps_alone_is_not_cut_by_the_default_epochs(
    base_dir: Path, poems_file: Path, tmp_path: Path, capsys
) -> None:
    args = ["--init-from", str(base_dir), "--corpus", str(poems_file), "--out-dir", str(tmp_path / "m")]
    # 8 poems: batches shrink to one step an epoch, so the default 10 epochs used to stop it at step 10
    assert main(["finetune", *args, "--max-steps", "30", "--no-progress"]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == "Stopped at step 30: --max-steps 30."


def test_finetuning_shows_one_progress_bar(base_dir: Path, tmp_path: Path, capfd) -> None:
    """The trainer's bar only: datasets' own bars for each map and filter (Filtering train…) stay off."""
    corpus = tagged_corpus(tmp_path / "tagged")
    args = ["finetune", "--init-from", str(base_dir), "--corpus", str(corpus), "--author", "李白"]
    code = main([*args, "--out-dir", str(tmp_path / "li"), "--max-steps", "2", "--batch-size", "2", "--seq-len", "16"])
    err = capfd.readouterr().err
    bars = set(re.findall(r"([^\r\n:]+): +(?:\d+%\||\d+ examples)", err))  # "train:  50%|…", "Filter: 100%|…"
    assert code == 0 and len(bars) == 1, err


def test_datasets_bars_come_back_after_finetuning(base_dir: Path, poems_file: Path, tmp_path: Path) -> None:
    import datasets

    finetune(small_cfg(tmp_path / "f", poems_file, max_steps=1), FinetuneOptions(init_from=str(base_dir)))
    assert not datasets.are_progress_bars_disabled()  # a caller's own datasets work keeps its bars


def test_a_finetuned_card_says_what_it_was_finetuned_on(base_dir: Path, tmp_path: Path) -> None:
    """Base, data (poet, how many poems), which split the figure comes from and how many poems it
    covers, set beside the base model's figure on the same poems; and no absolute path anywhere."""
    corpus = tagged_corpus(tmp_path / "tagged")
    cfg = small_cfg(tmp_path / "li", corpus, max_steps=2)
    assert Path(cfg.corpus).is_absolute() and Path(cfg.out_dir).is_absolute() and base_dir.is_absolute()
    finetune(cfg, FinetuneOptions(init_from=str(base_dir), authors=["李白"]))
    best = tmp_path / "li" / "best"
    card, info = (best / "README.md").read_text(), (best / "training.json").read_text()
    for text in (card, info):
        assert str(tmp_path) not in text and "/tmp" not in text
    described = "8 training poems: the poems of the chinese-poetry corpus (folder `tagged`) with poet 李白"
    assert f"Fine-tuned from `base` on {described} (held out: 4 validation" in card
    assert "Held-out perplexity on the validation split of the fine-tuning data, 4 poems (" in card
    assert "The base model, before fine-tuning, on the same poems: " in card
    assert "not comparable with a perplexity on the whole corpus's test split" in card
    assert "Held-out perplexity (validation split" not in card  # where a corpus figure would stand


def test_a_base_pretrained_on_song_is_named_on_every_later_card(base_dir: Path, tmp_path: Path) -> None:
    """The 全宋诗 a base read stays on the card of a model fine-tuned from it, and of one fine-tuned from that."""
    config = {"dynasties": "tang,song", "tang_weight": 2}
    (base_dir / "training.json").write_text(json.dumps({"train_config": config, "split": SPLIT_VERSION}))
    corpus = tagged_corpus(tmp_path / "tagged")
    for run, base, poet in (("li", base_dir, "李白"), ("du", tmp_path / "li" / "best", "杜甫")):
        finetune(small_cfg(tmp_path / run, corpus, max_steps=1), FinetuneOptions(init_from=str(base), authors=[poet]))
    for run in ("li", "du"):
        card = (tmp_path / run / "best" / "README.md").read_text()
        assert "The base model was trained on the Tang and Song poems (全唐诗 and 全宋诗) of [chinese" in card, run
        assert "(Tang weighted ×2), cleaned and split" in card, run
