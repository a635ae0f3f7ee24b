"""Shared fixtures: a small chinese-poetry folder and a tiny model, both made here."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Before anything imports huggingface_hub or gradio, which read these once: tests never touch the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tangpoem_hf import CharTokenizer, TangPoemConfig, TangPoemLSTM  # noqa: E402

# Small models run fastest on one thread, and OpenMP's spinning threads stall badly on a busy machine.
torch.set_num_threads(1)

# Real Tang poems in traditional script, as chinese-poetry stores them.
POEMS = [
    ("王之渙", "登鸛雀樓", ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"]),
    ("孟浩然", "春曉", ["春眠不覺曉，處處聞啼鳥。", "夜來風雨聲，花落知多少。"]),
    ("李白", "靜夜思", ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]),
    ("王維", "鹿柴", ["空山不見人，但聞人語響。", "返景入深林，復照青苔上。"]),
    ("杜甫", "絕句", ["兩箇黃鸝鳴翠柳，一行白鷺上青天。", "窗含西嶺千秋雪，門泊東吳萬里船。"]),
    ("王昌齡", "出塞", ["秦時明月漢時關，萬里長征人未還。", "但使龍城飛將在，不教胡馬度陰山。"]),
    ("李白", "早發白帝城", ["朝辭白帝彩雲間，千里江陵一日還。", "兩岸猿聲啼不住，輕舟已過萬重山。"]),
    ("杜牧", "山行", ["遠上寒山石徑斜，白雲生處有人家。", "停車坐愛楓林晚，霜葉紅於二月花。"]),
    (
        "王維",
        "山居秋暝",
        [
            "空山新雨後，天氣晚來秋。",
            "明月松間照，清泉石上流。",
            "竹喧歸浣女，蓮動下漁舟。",
            "隨意春芳歇，王孫自可留。",
        ],
    ),
    (
        "杜甫",
        "春望",
        [
            "國破山河在，城春草木深。",
            "感時花濺淚，恨別鳥驚心。",
            "烽火連三月，家書抵萬金。",
            "白頭搔更短，渾欲不勝簪。",
        ],
    ),
    (
        "李白",
        "送友人",
        [
            "青山橫北郭，白水遶東城。",
            "此地一爲別，孤蓬萬里征。",
            "浮雲遊子意，落日故人情。",
            "揮手自茲去，蕭蕭班馬鳴。",
        ],
    ),
    (
        "孟浩然",
        "過故人莊",
        [
            "故人具雞黍，邀我至田家。",
            "綠樹村邊合，青山郭外斜。",
            "開軒面場圃，把酒話桑麻。",
            "待到重陽日，還來就菊花。",
        ],
    ),
    ("張繼", "楓橋夜泊", ["月落烏啼霜滿天，江楓漁火對愁眠。", "姑蘇城外寒山寺，夜半鐘聲到客船。"]),
    ("賀知章", "回鄉偶書", ["少小離家老大回，鄉音無改鬢毛衰。", "兒童相見不相識，笑問客從何處來。"]),
    ("王翰", "涼州詞", ["葡萄美酒夜光杯，欲飲琵琶馬上催。", "醉臥沙場君莫笑，古來征戰幾人回。"]),
    ("李白", "望廬山瀑布", ["日照香爐生紫煙，遙看瀑布挂前川。", "飛流直下三千尺，疑是銀河落九天。"]),
]


# Six famous quatrains in simplified script: the vocabulary of the app's and the browser's tiny models.
QUATRAINS = [
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。",
    "月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。",
    "秦时明月汉时关，万里长征人未还。但使龙城飞将在，不教胡马度阴山。",
]


def id_in(split: str, start: int = 0) -> tuple[str, int]:
    """A poem id that the hash split puts into ``split`` (searching from ``start``)."""
    from tangpoem_hf.corpus import split_of

    k = start
    while split_of(f"poem-{k}") != split:
        k += 1
    return f"poem-{k}", k + 1


HELD_OUT = {10: "validation", 12: "validation", 3: "test", 15: "test"}  # index in POEMS → split


def poem_records(copies: int = 4) -> list[dict]:
    """The poems above, each ``copies`` times with distinct ids, as the 全唐诗 holds copies.

    Copies share their lines, so the split keeps them together: four poems (五绝, 五律, two 七绝; two by 李白) are
    held out for validation and test, the other twelve are training poems.
    """
    records, cursor = [], 0
    for _ in range(copies):
        for n, (a, t, p) in enumerate(POEMS):
            pid, cursor = id_in(HELD_OUT.get(n, "train"), cursor)
            records.append({"author": a, "title": t, "paragraphs": p, "id": pid})
    return records


def write_corpus(folder: Path, records: list[dict], per_file: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, start in enumerate(range(0, len(records), per_file)):
        chunk = records[start : start + per_file]
        (folder / f"poet.tang.{n * 1000}.json").write_text(json.dumps(chunk, ensure_ascii=False), encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Corpus caches go to a temporary folder, never the user's."""
    import tangpoem_hf.corpus as corpus

    monkeypatch.setattr(corpus, "_CACHE", tmp_path_factory.getbasetemp() / "tangpoem-cache")


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "corpus", poem_records())


def make_tiny_model(texts: list[str] | None = None, seed: int = 0, simplified: bool = True, **config) -> TangPoemLSTM:
    """The one tiny random model of the tests: a vocabulary from ``texts`` (default: the poems above)."""
    from tangpoem_hf.text import clean_poem_text

    texts = texts or [clean_poem_text("".join(p)) for _, _, p in POEMS]
    tok = CharTokenizer.build(texts, simplified=simplified)
    torch.manual_seed(seed)
    params = {"embedding_dim": 16, "hidden_size": 24, **config}
    model = TangPoemLSTM(TangPoemConfig(vocab_size=len(tok), **params))
    model.tokenizer = tok
    return model.eval()


def bias_model(preprocessing: str, texts: list[str]) -> tuple[TangPoemLSTM, torch.Tensor]:
    """All weights zero but the output bias: every position predicts softmax(bias), whatever the
    context, so a loss over known targets can be computed by hand. Returns the model and log-probs."""
    from tangpoem_hf.text import strip_punctuation

    tok = CharTokenizer.build([strip_punctuation(t) for t in texts] if preprocessing == "report" else texts)
    model = TangPoemLSTM(
        TangPoemConfig(vocab_size=len(tok), embedding_dim=4, hidden_size=4, preprocessing=preprocessing)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head.bias.copy_(torch.linspace(-2.0, 3.0, len(tok)))
    model.tokenizer = tok
    return model, torch.log_softmax(model.head.bias.detach(), dim=0)


@pytest.fixture
def tiny_model() -> TangPoemLSTM:
    return make_tiny_model()


@pytest.fixture
def tiny_model_dir(tmp_path, tiny_model) -> Path:
    folder = tmp_path / "tiny-model"
    tiny_model.save_pretrained(folder)
    return folder


def tiny_train_args(corpus: Path, out: Path) -> list[str]:
    """``tangpoem train`` arguments for a few steps of a tiny model on a small corpus."""
    return [
        "train", "--corpus", str(corpus), "--out-dir", str(out), "--embedding-dim", "8", "--hidden-size", "8",
        "--batch-size", "4", "--seq-len", "8", "--max-steps", "3", "--no-progress",
    ]  # fmt: skip


def full_corpus() -> str | None:
    return os.environ.get("TANGPOEM_CORPUS")


needs_corpus = pytest.mark.skipif(not full_corpus(), reason="TANGPOEM_CORPUS is not set (the full corpus is absent)")
