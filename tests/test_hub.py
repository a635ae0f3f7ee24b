"""The Hub round trip, offline: dry-run folders, pushes through a recording HfApi double, loading
through the hub cache layout, and the Space folder actually starting. What the cards say: test_cards.py."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio
import pandas as pd
import pytest
from conftest import POEMS as CORPUS_POEMS
from conftest import make_tiny_model
from huggingface_hub import DatasetCard, ModelCard, SpaceCard, constants

from tangpoem_hf import ModelFileError, TangPoemLSTM, hub
from tangpoem_hf.cli import build_parser, main
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.push import push as run_push

ROOT = Path(__file__).resolve().parents[1]
POEMS = [
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。",
    "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。",
    "月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。",
    "秦时明月汉时关，万里长征人未还。但使龙城飞将在，不教胡马度阴山。",
    "少小离家老大回，乡音无改鬓毛衰。儿童相见不相识，笑问客从何处来。",
]
# chinese-poetry records (traditional script, as the corpus stores them) for the dataset push.
RAW_POEMS = [p for p in CORPUS_POEMS if p[1] in ("靜夜思", "登鸛雀樓", "春曉", "山居秋暝")]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 for this process (huggingface_hub reads it at import) and for children."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def tiny_model(seed: int = 0) -> TangPoemLSTM:
    return make_tiny_model(POEMS, seed=seed, hidden_size=16)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "best"
    tiny_model().save_pretrained(folder)
    info = {"train_config": {"epochs": 3, "optimizer": "adam", "hidden_size": 16}, "val_perplexity": 87.5, "step": 42}
    (folder / "training.json").write_text(json.dumps(info), encoding="utf-8")
    return folder


class RecordingHfApi:
    """An HfApi double: records every call and keeps a copy of each folder it was asked to upload."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.uploads: list[dict[str, Any]] = []
        self.gate: threading.Event | None = None  # when set, uploads wait for it (a slow network)
        self._executor = ThreadPoolExecutor(max_workers=1)

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(
        self, *, repo_id: str, folder_path: str, allow_patterns: list[str] | None = None, **kwargs: Any
    ) -> SimpleNamespace:
        if self.gate is not None:
            assert self.gate.wait(30), "the test never released the upload"
        folder = Path(folder_path)
        files = sorted(
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and (allow_patterns is None or any(fnmatch.fnmatch(p.name, a) for a in allow_patterns))
        )
        copy = self.store / f"upload-{len(self.uploads)}"
        for name in files:
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / name, copy / name)
        self.calls.append(("upload_folder", {"repo_id": repo_id, **kwargs}))
        self.uploads.append({"repo_id": repo_id, "files": files, "copy": copy, **kwargs})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{'0' * 40}", oid="0" * 40)

    def add_space_variable(self, repo_id: str, key: str, value: str, **kwargs: Any) -> dict:
        self.calls.append(("add_space_variable", {"repo_id": repo_id, "key": key, "value": value}))
        return {}

    def run_as_future(self, fn: Any, *args: Any, **kwargs: Any) -> Future:
        return self._executor.submit(fn, *args, **kwargs)


@pytest.fixture
def api(tmp_path: Path) -> RecordingHfApi:
    return RecordingHfApi(tmp_path / "hub-double")


def push(*argv: str, api: RecordingHfApi | None = None) -> int:
    """``tangpoem push ARGV`` as the CLI parses and runs it, with ``api`` standing in for the Hub."""
    return run_push(build_parser().parse_args(["push", *argv]), api=api)


def same_poem(a: TangPoemLSTM, b: TangPoemLSTM) -> bool:
    kwargs = {"first": "明", "form": 5, "lines": 4, "seed": 3}
    return generate_poem(a, **kwargs).text == generate_poem(b, **kwargs).text


# --- model pushes ---------------------------------------------------------------------------------


def test_push_model_folder_records_upload_that_loads_back(model_dir: Path, api: RecordingHfApi) -> None:
    (model_dir / "optimizer.safetensors").write_bytes(b"not for the Hub")
    info = hub.push_model_folder(model_dir, "alice/tangpoem", api=api, private=True, commit_message="epoch 3")
    assert info.commit_url.startswith("https://huggingface.co/alice/tangpoem/commit/")
    assert api.calls[0] == (
        "create_repo",
        {"repo_id": "alice/tangpoem", "repo_type": "model", "private": True, "exist_ok": True},
    )
    upload = api.uploads[0]
    assert upload["repo_id"] == "alice/tangpoem" and upload["commit_message"] == "epoch 3"
    assert upload["files"] == ["README.md", "config.json", "model.safetensors", "training.json", "vocab.json"]
    card = ModelCard.load(upload["copy"] / "README.md")
    assert card.data.pipeline_tag == "text-generation" and "87.50" in card.text
    assert same_poem(TangPoemLSTM.from_pretrained(upload["copy"]), TangPoemLSTM.from_pretrained(model_dir))


def test_push_model_folder_as_future_does_not_block(model_dir: Path, api: RecordingHfApi) -> None:
    api.gate = threading.Event()
    future = hub.push_model_folder(model_dir, "alice/tangpoem", api=api, run_as_future=True)
    assert isinstance(future, Future) and not future.done()  # the upload is still "on the network"
    shutil.rmtree(model_dir)  # the trainer may replace best/ at once: the push works on a snapshot
    api.gate.set()
    future.result(timeout=60)
    assert api.uploads[0]["files"][:3] == ["README.md", "config.json", "model.safetensors"]
    TangPoemLSTM.from_pretrained(api.uploads[0]["copy"])


def test_epoch_pushes_share_one_api_and_stay_in_order(
    model_dir: Path, api: RecordingHfApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub, "_shared_api", api)  # what HfApi() would be, without an injected api
    futures = [
        hub.push_model_folder(model_dir, "alice/tangpoem", run_as_future=True, commit_message=f"epoch {n}")
        for n in (1, 2, 3)
    ]
    for future in futures:
        future.result(timeout=60)
    assert [u["commit_message"] for u in api.uploads] == ["epoch 1", "epoch 2", "epoch 3"]


def test_push_model_in_memory(api: RecordingHfApi) -> None:
    model = tiny_model(seed=5)
    hub.push_model(model, "alice/tangpoem", api=api, datasets=["alice/tang-poems"])
    assert same_poem(TangPoemLSTM.from_pretrained(api.uploads[0]["copy"]), model)


def test_push_model_folder_refuses_an_incomplete_folder(tmp_path: Path, api: RecordingHfApi) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(hub.TangPoemError, match="model.safetensors, vocab.json missing"):
        hub.push_model_folder(tmp_path, "alice/tangpoem", api=api)
    assert api.calls == []


def test_push_model_dry_run_folder_loads(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "dry"
    code = push(
        "model",
        *["--model", str(model_dir), "--repo-id", "alice/tangpoem", "--dry-run", str(out), "--base-model", "bob/base"],
    )
    assert code == 0 and "dry run" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "training.json",
        "vocab.json",
    ]
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "tangpoem" and card.data.base_model == "bob/base"
    assert same_poem(TangPoemLSTM.from_pretrained(out), TangPoemLSTM.from_pretrained(model_dir))


def test_push_model_command_uploads_through_the_api(model_dir: Path, api: RecordingHfApi) -> None:
    code = push("model", "--model", str(model_dir), "--repo-id", "alice/tangpoem", "--private", api=api)
    assert code == 0
    assert api.calls[0][1]["private"] is True
    assert "model.safetensors" in api.uploads[0]["files"]
    TangPoemLSTM.from_pretrained(api.uploads[0]["copy"])


def test_push_model_command_reports_a_broken_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["push", "model", "--model", str(tmp_path), "--repo-id", "a/b", "--dry-run", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("tangpoem: error: ") and "config.json is missing" in err and "Traceback" not in err


# --- from_pretrained through the hub cache ------------------------------------------------------


def _write_snapshot(repo_cache: Path, revision: str, model: TangPoemLSTM, tmp: Path) -> None:
    """Lay a model out as huggingface_hub does: blobs by hash, snapshot symlinks to them."""
    saved = tmp / f"saved-{revision[:8]}"
    model.save_pretrained(saved)
    snapshot = repo_cache / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo_cache / "blobs").mkdir(exist_ok=True)
    for name in ("config.json", "model.safetensors", "vocab.json"):
        data = (saved / name).read_bytes()
        blob = repo_cache / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))


@pytest.fixture
def hub_cache(tmp_path: Path) -> tuple[Path, str, str]:
    cache = tmp_path / "hf-cache"
    repo_cache = cache / "models--alice--tangpoem"
    rev_main, rev_v2 = "a" * 40, "b" * 40
    _write_snapshot(repo_cache, rev_main, tiny_model(seed=1), tmp_path)
    _write_snapshot(repo_cache, rev_v2, tiny_model(seed=2), tmp_path)
    (repo_cache / "refs").mkdir()
    (repo_cache / "refs" / "main").write_text(rev_main)
    (repo_cache / "refs" / "v2").write_text(rev_v2)
    return cache, rev_main, rev_v2


def test_from_pretrained_reads_the_hub_cache(hub_cache: tuple[Path, str, str]) -> None:
    cache, rev_main, rev_v2 = hub_cache
    main = TangPoemLSTM.from_pretrained("alice/tangpoem", cache_dir=cache, local_files_only=True)
    assert same_poem(main, tiny_model(seed=1))
    by_branch = TangPoemLSTM.from_pretrained("alice/tangpoem", revision="v2", cache_dir=str(cache), token="hf_x")
    by_hash = TangPoemLSTM.from_pretrained("alice/tangpoem", revision=rev_v2, cache_dir=cache, local_files_only=True)
    assert same_poem(by_branch, tiny_model(seed=2)) and same_poem(by_hash, by_branch)
    assert not same_poem(main, by_branch)


def test_from_pretrained_uses_the_default_cache_offline(
    hub_cache: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache[0]))
    assert same_poem(TangPoemLSTM.from_pretrained("alice/tangpoem"), tiny_model(seed=1))


def test_from_pretrained_names_what_the_cache_lacks(hub_cache: tuple[Path, str, str]) -> None:
    with pytest.raises(ModelFileError, match="config.json of alice/other is not in the local cache"):
        TangPoemLSTM.from_pretrained("alice/other", cache_dir=hub_cache[0], local_files_only=True)
    with pytest.raises(ModelFileError, match="not in the local cache"):
        TangPoemLSTM.from_pretrained("alice/tangpoem", revision="v3", cache_dir=hub_cache[0])


# --- the Space ------------------------------------------------------------------------------------


def test_space_dry_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "space"
    code = push("space", "--repo-id", "alice/tang-space", "--model-id", "alice/tangpoem", "--dry-run", str(out))
    assert code == 0
    assert (out / "app.py").read_text(encoding="utf-8") == (ROOT / "app.py").read_text(encoding="utf-8")
    assert (out / "tangpoem_hf" / "decoding.py").is_file() and not (out / "tangpoem_hf" / "pretrained").exists()
    assert not list(out.rglob("__pycache__"))
    requirements = (out / "requirements.txt").read_text().split()
    assert "torch==2.13.0" in requirements
    assert f"gradio=={gradio.__version__}" in requirements
    assert all("==" in line for line in requirements)
    card = SpaceCard.load(out / "README.md")
    assert card.data.sdk == "gradio" and card.data.sdk_version == gradio.__version__
    assert card.data.app_file == "app.py"
    assert card.data.models == ["alice/tangpoem"]


def test_space_push_through_the_api(api: RecordingHfApi) -> None:
    code = push("space", "--repo-id", "alice/tang-space", "--model-id", "alice/tangpoem", api=api)
    assert code == 0
    create = api.calls[0][1]
    assert create["repo_type"] == "space" and create["space_sdk"] == "gradio"
    assert ("add_space_variable", {"repo_id": "alice/tang-space", "key": "MODEL_ID", "value": "alice/tangpoem"}) in (
        api.calls
    )
    assert {"app.py", "requirements.txt", "README.md", "tangpoem_hf/app_support.py"} <= set(api.uploads[0]["files"])


def test_space_without_a_model_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(hub, "BUNDLED_MODEL_DIR", tmp_path / "empty")
    assert main(["push", "space", "--repo-id", "alice/s", "--dry-run", str(tmp_path / "space")]) == 2
    assert "pass a Hub model id (--model-id USER/NAME)" in capsys.readouterr().err
    assert not (tmp_path / "space").exists()


def test_space_without_model_id_is_staged_when_a_bundled_model_exists(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub, "BUNDLED_MODEL_DIR", model_dir)  # stands in for a trained tangpoem_hf/pretrained
    out = hub.stage_space_folder(tmp_path / "space", "alice/s")
    assert (out / "tangpoem_hf" / "app_support.py").is_file()
    assert SpaceCard.load(out / "README.md").data.models == []


SPACE_START = """
import socket, sys
from pathlib import Path
import app, tangpoem_hf
assert Path(tangpoem_hf.__file__).resolve().is_relative_to(Path.cwd().resolve()), tangpoem_hf.__file__
import gradio as gr
assert isinstance(app.demo, gr.Blocks)
app.get_model()
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
from gradio_client import Client
result = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
    "续写", "明", "五言", 4, 0.8, 0, 0.9, 1, "", "简体", api_name="/generate")
app.demo.close()
print("POEM", result[1].replace("\\n", "/"))
"""


def test_space_folder_starts(tmp_path: Path, model_dir: Path) -> None:
    out = tmp_path / "space"
    args = ["--repo-id", "alice/tang-space", "--model-id", "alice/tangpoem", "--dry-run", str(out)]
    assert push("space", *args) == 0
    env = {**os.environ, "MODEL_ID": str(model_dir), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", SPACE_START], cwd=out, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    poem = proc.stdout.split("POEM ", 1)[1].strip()
    assert poem.startswith("明") and len(poem.split("/")) == 2


# --- the dataset ----------------------------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import datasets

    import tangpoem_hf.corpus as corpus_module

    monkeypatch.setattr(corpus_module, "_CACHE", tmp_path / "tangpoem-cache")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    records = [
        {"id": f"poem-{copy}-{i}", "author": a, "title": t, "paragraphs": p}
        for copy in range(30)
        for i, (a, t, p) in enumerate(RAW_POEMS)
    ]
    folder = tmp_path / "chinese-poetry"
    folder.mkdir()
    (folder / "poet.tang.0.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return folder


def test_dataset_dry_run_writes_parquet_splits_and_card(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    code = push("dataset", "--corpus", str(corpus), "--repo-id", "alice/tang-poems", "--dry-run", str(out))
    assert code == 0
    frames = {split: pd.read_parquet(out / "data" / f"{split}-00000-of-00001.parquet") for split in hub_splits()}
    assert sum(len(f) for f in frames.values()) == 120 and len(frames["train"]) > 100
    assert set(frames["train"].columns) >= {"id", "text", "form", "author", "title"}
    assert "床前明月光，疑是地上霜。举头望明月，低头思故乡。" in set(frames["train"]["text"])
    card = DatasetCard.load(out / "README.md")
    assert card.data.language == "zh" and card.data.license == "mit"
    paths = {c["split"]: c["path"] for c in card.data.configs[0]["data_files"]}
    assert paths["train"] == "data/train-*.parquet"
    assert 'load_dataset("alice/tang-poems")' in card.text


def hub_splits() -> tuple[str, ...]:
    from tangpoem_hf.corpus import SPLITS

    return SPLITS


def test_dataset_push_through_the_api(corpus: Path, api: RecordingHfApi) -> None:
    code = push("dataset", "--corpus", str(corpus), "--repo-id", "alice/tang-poems", api=api)
    assert code == 0
    assert api.calls[0] == (
        "create_repo",
        {"repo_id": "alice/tang-poems", "repo_type": "dataset", "private": False, "exist_ok": True},
    )
    assert "data/train-00000-of-00001.parquet" in api.uploads[0]["files"]
    assert api.uploads[0]["repo_type"] == "dataset"
